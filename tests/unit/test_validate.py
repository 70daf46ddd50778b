import json

import pytest

from nodes.core.validate import BadRequest, parse_append, parse_faults, check_messages

CT = "application/json"


def parse(body, ct=CT, size=3, cap=1 << 20):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return parse_append(body, ct, size, cap)


def test_valid_defaults_w_to_cluster_size():
    r = parse({"message": "hi"})
    assert (r.message, r.w, r.timeout, r.key) == ("hi", 3, None, None)
    r = parse({"message": "hi", "w": 2, "timeout": 1.5, "id": "abc"}, ct="application/json; charset=utf-8")
    assert (r.w, r.timeout, r.key) == (2, 1.5, "abc")


@pytest.mark.parametrize("body,ct,fragment", [
    (b"not json", CT, "not valid JSON"),
    (b'{"message": "x"', CT, "not valid JSON"),
    (b"\xff\xfe", CT, "UTF-8"),
    (b'["message"]', CT, "JSON object"),
    (b'{"message": "x"}', "text/plain", "Content-Type"),
    (b'{"message": "x"}', None, "Content-Type"),
    ({}, CT, "'message' is required"),
    ({"message": 5}, CT, "'message' must be a string"),
    ({"message": None}, CT, "'message' is required"),
    ({"message": "x", "w": 1.0}, CT, "'w' must be an integer"),
    ({"message": "x", "w": True}, CT, "'w' must be an integer"),
    ({"message": "x", "w": "2"}, CT, "'w' must be an integer"),
    ({"message": "x", "w": 0}, CT, "between 1 and"),
    ({"message": "x", "w": 4}, CT, "between 1 and"),
    ({"message": "x", "w": -1}, CT, "between 1 and"),
    ({"message": "x", "timeout": 0}, CT, "'timeout'"),
    ({"message": "x", "timeout": "1"}, CT, "'timeout'"),
    ({"message": "x", "timeout": True}, CT, "'timeout'"),
    (b'{"message": "x", "timeout": NaN}', CT, "'timeout'"),
    (b'{"message": "x", "w": Infinity}', CT, "'w'"),
    ({"message": "x", "id": ""}, CT, "'id'"),
    ({"message": "x", "id": 7}, CT, "'id'"),
    ({"message": "x", "extra": 1}, CT, "unknown field"),
])
def test_bad_input_is_400_with_reason(body, ct, fragment):
    with pytest.raises(BadRequest) as e:
        parse(body, ct)
    assert e.value.status == 400
    assert fragment in e.value.message


def test_too_large_is_413():
    with pytest.raises(BadRequest) as e:
        parse({"message": "x" * 100}, cap=50)
    assert e.value.status == 413


def test_deeply_nested_json_is_400_not_a_crash():
    with pytest.raises(BadRequest):
        parse(b"[" * 100000 + b"]" * 100000)


def test_unicode_round_trips():
    text = "héllo ✓ 你好 🎉 \u0000 \U0010ffff"
    assert parse({"message": text}).message == text


def test_faults_body():
    assert parse_faults(b'{"delay": 1, "error_rate": 0.5}', CT, 100) == {"delay": 1.0, "error_rate": 0.5}
    assert parse_faults(b'{}', CT, 100) == {}
    for bad in (b'{"error_rate": 2}', b'{"delay": -1}', b'{"delay": "1"}', b'{"x": 1}'):
        with pytest.raises(BadRequest):
            parse_faults(bad, CT, 100)


def test_check_messages():
    assert check_messages(["a", "b"]) == ["a", "b"]
    for bad in ([], "ab", [1], None):
        with pytest.raises(BadRequest):
            check_messages(bad)


def parse_batch(body, max_batch=5, cap=1 << 20):
    return parse_append(json.dumps(body).encode(), CT, 3, cap, max_batch)


def test_a_batch_takes_w_timeout_and_id():
    from nodes.core.validate import BatchRequest
    r = parse_batch({"messages": ["a", "b"], "w": 2, "timeout": 5, "id": "key"})
    assert r == BatchRequest(["a", "b"], 2, 5.0, "key")
    assert parse_batch({"messages": ["only"]}).w == 3


@pytest.mark.parametrize("body,status,fragment,index", [
    ({"messages": []}, 400, "non-empty list", None),
    ({"messages": "abc"}, 400, "non-empty list", None),
    ({"messages": None}, 400, "non-empty list", None),
    ({"messages": {"0": "a"}}, 400, "non-empty list", None),
    ({"messages": ["a", 1, "c"]}, 400, "'messages'[1]", 1),
    ({"messages": ["a", "b", None]}, 400, "'messages'[2]", 2),
    ({"messages": [["a"]]}, 400, "'messages'[0]", 0),
    ({"messages": ["a"], "message": "b"}, 400, "not both", None),
    ({"messages": ["a"] * 6}, 413, "--max-batch", None),
    ({"messages": ["a"], "w": 4}, 400, "'w'", None),
    ({"messages": ["a"], "timeout": 0}, 400, "'timeout'", None),
    ({"messages": ["a"], "id": ""}, 400, "'id'", None),
    ({"messages": ["a"], "extra": 1}, 400, "unknown field", None),
])
def test_a_bad_batch_is_refused_whole(body, status, fragment, index):
    with pytest.raises(BadRequest) as e:
        parse_batch(body)
    assert e.value.status == status and fragment in e.value.message
    assert e.value.extra == ({} if index is None else {"index": index})
