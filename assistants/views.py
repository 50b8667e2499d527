"""Pages: the list of assistants and one page per assistant with the voice button."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import AssistantRecord


@login_required
def assistant_list(request: HttpRequest) -> HttpResponse:
    return render(request, "assistants/list.html", {"assistants": AssistantRecord.objects.all()})


@login_required
def assistant_page(request: HttpRequest, slug: str) -> HttpResponse:
    assistant = get_object_or_404(AssistantRecord, slug=slug)
    return render(request, "assistants/assistant.html", {"assistant": assistant})
