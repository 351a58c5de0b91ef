"""Settings of the account service: the common base plus its own apps."""

from common.settings import service_settings

globals().update(
    service_settings(
        "account", apps=["account.accounts"], handlers="account.accounts.handlers.HANDLERS"
    )
)
