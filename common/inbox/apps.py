from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "common.inbox"
    label = "inbox"
    verbose_name = "Inbox (messages received)"

    def ready(self) -> None:
        # Every reason's counter exists from the start, at 0: a rate or increase() over it is 0
        # until the first dead letter, not "no data" (the dashboard and the DeadLetters alert).
        from common.inbox.metrics import DEAD_LETTERS
        from common.inbox.models import DeadLetter

        for reason in DeadLetter.Reason.values:
            DEAD_LETTERS.labels(reason)
