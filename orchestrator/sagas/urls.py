from django.urls import path

from orchestrator.sagas.apis import (
    CancellationCollectionApi,
    CancellationDetailApi,
    CheckoutCollectionApi,
    CheckoutDetailApi,
)

urlpatterns = [
    path("checkouts", CheckoutCollectionApi.as_view(), name="checkouts"),
    path("checkouts/<uuid:checkout_id>", CheckoutDetailApi.as_view(), name="checkout-detail"),
    path("cancellations", CancellationCollectionApi.as_view(), name="cancellations"),
    path(
        "cancellations/<uuid:cancellation_id>",
        CancellationDetailApi.as_view(),
        name="cancellation-detail",
    ),
]
