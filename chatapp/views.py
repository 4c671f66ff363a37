"""Front page and accounts."""

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .forms import SignUpForm
from .security import signup_allowed

SIGNUP_THROTTLED = "Too many sign-ups from your address. Try again in an hour."


def home(request: HttpRequest) -> HttpResponse:
    """The front page."""
    return render(request, "chatapp/home.html")


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account, log it in and go to the rooms."""
    if request.user.is_authenticated:
        return redirect("rooms:list")
    if request.method == "POST" and not signup_allowed(request):
        form = SignUpForm()
        context = {"form": form, "throttled": SIGNUP_THROTTLED}
        return render(request, "chatapp/signup.html", context, status=429)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("rooms:list")
    return render(request, "chatapp/signup.html", {"form": form})
