from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "order.orders"
    label = "orders"
