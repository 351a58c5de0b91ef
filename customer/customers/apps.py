from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customer.customers"
    label = "customers"
