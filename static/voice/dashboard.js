// Draws the operations dashboard's charts (Chart.js) from the figures the page embeds.
(function () {
  "use strict";
  const figures = JSON.parse(document.getElementById("voice-figures").textContent);
  const style = getComputedStyle(document.documentElement);
  const primary = style.getPropertyValue("--primary").trim() || "#79aec8";
  const accent = style.getPropertyValue("--accent").trim() || "#f5dd5d";
  const error = style.getPropertyValue("--error-fg").trim() || "#ba2121";
  const common = {responsive: true, maintainAspectRatio: false, animation: false, spanGaps: true,
                  elements: {point: {radius: 4}},
                  plugins: {legend: {display: false}}, scales: {y: {beginAtZero: true}}};

  function chart(id, type, labels, datasets, options) {
    const canvas = document.getElementById(id);
    const legend = datasets.length > 1 ? {plugins: {legend: {display: true}}} : {};
    canvas.chart = new Chart(canvas, {type, data: {labels, datasets}, options: Object.assign({}, common, legend, options || {})});
  }

  const counts = {scales: {y: {beginAtZero: true, ticks: {precision: 0}}}};  // whole sessions only
  chart("chart-sessions-hour", "bar", figures.sessionsPerHour.labels,
        [{label: "sessions", data: figures.sessionsPerHour.values, backgroundColor: primary}], counts);
  chart("chart-sessions-day", "bar", figures.sessionsPerDay.labels,
        [{label: "sessions", data: figures.sessionsPerDay.values, backgroundColor: primary}], counts);
  chart("chart-duration", "line", figures.labels,
        [{label: "seconds", data: figures.avgDurationSeconds, borderColor: primary, backgroundColor: primary}]);
  chart("chart-reuse", "line", figures.labels,
        [{label: "% reused", data: figures.reuseRatePercent, borderColor: primary, backgroundColor: primary}],
        {scales: {y: {beginAtZero: true, max: 100}}});
  chart("chart-latency", "line", figures.labels, [
    {label: "p50", data: figures.joinLatencyP50Ms, borderColor: primary, backgroundColor: primary},
    {label: "p99", data: figures.joinLatencyP99Ms, borderColor: accent, backgroundColor: accent}]);
  chart("chart-errors", "bar", figures.labels,
        [{label: "% errors", data: figures.errorRatePercent, backgroundColor: error}]);
  document.body.dataset.chartsReady = "1";  // for the browser test and screenshots
})();
