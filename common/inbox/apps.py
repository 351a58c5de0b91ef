from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "common.inbox"
    label = "inbox"
    verbose_name = "Inbox (messages received)"
