"""The product's URLs plus Django's own ``PasswordChangeView``, for servers started by tests.

The socket tests change a password exactly as Django's view does (``form.save()``, then
``update_session_auth_hash``), whatever page the product puts around it.
"""

from django.contrib.auth.views import PasswordChangeView
from django.urls import path

from chatproject.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    *product_urlpatterns,
    path("test/password-change/", PasswordChangeView.as_view(success_url="/")),
]
