from django.urls import path

from common.auth.views import token_check
from common.urls import handler400, handler403, handler404, handler500, service_urlpatterns
from customer.customers.apis import discovery_view, jwks_view

urlpatterns = [
    # The bundled identity provider's public documents, and the token check Nginx asks.
    path("customer/.well-known/jwks.json", jwks_view, name="jwks"),
    path("customer/.well-known/openid-configuration", discovery_view, name="openid-configuration"),
    path("customer/auth/verify", token_check, name="token-check"),
    *service_urlpatterns("customer.customers.urls"),
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
