from common.settings.database import database_url


def test_explicit_url_wins() -> None:
    environ = {"ORDER_DATABASE_URL": "postgres://u@db:5433/orders", "DATABASE_HOST": "x"}

    assert database_url("order", environ) == "postgres://u@db:5433/orders"


def test_url_is_built_from_the_shared_variables() -> None:
    environ = {"DATABASE_HOST": "pg", "DATABASE_PORT": "6000", "DATABASE_NAME_PREFIX": "e2e_"}

    assert database_url("account", environ) == "postgres://postgres@pg:6000/e2e_account"
    assert database_url("account", {}) == "postgres://postgres@127.0.0.1:5432/account"
