from django.urls import path

from order.orders.apis import MenuApi, OrderDetailApi, OrderListApi

urlpatterns = [
    path("menu", MenuApi.as_view(), name="menu"),
    path("orders", OrderListApi.as_view(), name="orders"),
    path("orders/<uuid:order_id>", OrderDetailApi.as_view(), name="order-detail"),
]
