from django.urls import path

from customer.customers.apis import (
    CustomerBlockApi,
    CustomerCollectionApi,
    CustomerDetailApi,
    CustomerUnblockApi,
    TokenApi,
)

urlpatterns = [
    path("customers", CustomerCollectionApi.as_view(), name="customers"),
    path("customers/<uuid:customer_id>", CustomerDetailApi.as_view(), name="customer-detail"),
    path("customers/<uuid:customer_id>/block", CustomerBlockApi.as_view(), name="customer-block"),
    path(
        "customers/<uuid:customer_id>/unblock",
        CustomerUnblockApi.as_view(),
        name="customer-unblock",
    ),
    path("tokens", TokenApi.as_view(), name="tokens"),
]
