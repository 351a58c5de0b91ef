from common.idempotency.services import request_fingerprint


def test_fingerprint_ignores_key_order_but_not_values_or_path() -> None:
    base = request_fingerprint(method="POST", path="/a", data={"x": 1, "y": [1, 2]})

    assert base == request_fingerprint(method="POST", path="/a", data={"y": [1, 2], "x": 1})
    assert base != request_fingerprint(method="POST", path="/a", data={"x": 2, "y": [1, 2]})
    assert base != request_fingerprint(method="POST", path="/b", data={"x": 1, "y": [1, 2]})
