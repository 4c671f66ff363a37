"""One plain page, so the launcher can see the peer answering HTTP."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("ok"))]
