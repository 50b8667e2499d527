"""The admin site, with the staff-only operations dashboard at /admin/dashboard/.

A custom AdminSite (Django's documented way to add admin pages): the
dashboard gets the admin's login, staff check and look for free.
"""
from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import escape

logger = logging.getLogger("voicesessions.dashboard")


def _plain_400(message: str) -> HttpResponseBadRequest:
    """A 400 that echoes user input: plain text, and escaped as well, so it cannot become markup
    even where something renders it as HTML."""
    return HttpResponseBadRequest(escape(message), content_type="text/plain; charset=utf-8")


class VoiceAdminSite(admin.AdminSite):
    site_header = "Voice sessions administration"
    site_title = "Voice sessions admin"
    index_template = "admin/voice_index.html"

    def get_urls(self):
        return [path("dashboard/", self.admin_view(self.dashboard_view), name="voice-dashboard"),
                *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """GET: charts over ?period= (24h, 48h, 7d, 30d); ?format=json for the figures.
        POST: set the rollout percentage, or roll back to 0 %."""
        from assistants import rollout
        from assistants.models import AssistantRecord, RolloutOverride, VoiceRollout
        from voicesessions import dashboard

        if request.method == "POST":
            if not request.user.has_perm("assistants.change_voicerollout"):
                return HttpResponseForbidden("You may not change the voice rollout.")
            raw = "0" if "rollback" in request.POST else request.POST.get("percentage", "")
            try:
                updated = rollout.set_percentage(int(raw), user=request.user)
            except (ValueError, ValidationError):
                return _plain_400(f"percentage: '{raw}' is not a whole number from 0 to 100.")
            logger.warning("[VoiceSession] rollout set to %s%% by %s", updated.percentage, request.user.get_username())
            messages.success(request, f"Voice rollout is now {updated.percentage}%.")
            return redirect(f"{request.path}?period={request.POST.get('period', dashboard.DEFAULT_PERIOD)}")
        period = request.GET.get("period", dashboard.DEFAULT_PERIOD)
        try:
            figures = dashboard.stats(period)
        except dashboard.UnknownPeriod as exc:
            if request.GET.get("format") == "json":
                return JsonResponse({"error": "invalid", "detail": str(exc), "fields": {"period": [str(exc)]}},
                                    status=400)
            return _plain_400(str(exc))
        if request.GET.get("format") == "json":
            return JsonResponse(figures)
        context = {**self.each_context(request), "title": "Voice operations", "figures": figures,
                   "periods": dashboard.PERIODS.values(), "rollout": VoiceRollout.load(),
                   "forced_on": AssistantRecord.objects.filter(rollout_override=RolloutOverride.FORCE_ON).count(),
                   "can_change_rollout": request.user.has_perm("assistants.change_voicerollout")}
        return TemplateResponse(request, "admin/voice_dashboard.html", context)
