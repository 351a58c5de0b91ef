from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "account.accounts"
    label = "accounts"
