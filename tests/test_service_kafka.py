"""The Kafka adapter (service/kafka.py) against faststream's in-memory TestKafkaBroker: nothing connects anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("faststream.kafka")

from faststream import Context  # noqa: E402
from faststream.kafka import TestKafkaBroker  # noqa: E402

from service.kafka import KafkaSettings, create_kafka_app  # noqa: E402
from service.settings import Settings  # noqa: E402

IN, OUT = "req", "tags"


def run_adapter(clf: Any, sends: list[tuple[str, Any, dict]], **settings: Any) -> list[tuple[bytes | None, dict]]:
    """Publish ``(method, payload, kwargs)`` to the input topic; return (key, result) pairs from the output topic."""
    _, broker = create_kafka_app(Settings(**settings), KafkaSettings(input_topic=IN, output_topic=OUT), clf)
    got: list[tuple[bytes | None, dict]] = []

    @broker.subscriber(OUT)
    async def sink(msg: Any = Context("message")) -> None:  # noqa: B008
        got.append((msg.raw_message.key, json.loads(msg.body)))

    async def main() -> None:
        async with TestKafkaBroker(broker) as br:
            for method, payload, kw in sends:
                if method == "batch":
                    await br.publish_batch(*payload, topic=IN, **kw)
                else:
                    await br.publish(payload, IN, **kw)

    asyncio.run(main())
    return got


def test_good_records_are_tagged_like_the_http_service(fake_clf) -> None:
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "translate hello world"}], "id": "c1"}
    sends = [
        ("one", {"text": "hello world python code", "request_id": "r1"}, {"key": b"user-1"}),
        ("one", {"request": {"messages": [{"role": "user", "content": "the query"}]},
                 "metadata": {"request_id": "r2", "prompt_tokens": 3}}, {}),
        ("one", chat, {"key": b"user-2"}),
        ("one", json.dumps("a bare string").encode(), {}),
    ]
    got = run_adapter(fake_clf, sends)
    assert len(got) == 4
    expected = fake_clf.predict(["hello world python code", "the query", "translate hello world", "a bare string"])
    for (_, res), tag in zip(got, expected, strict=True):
        assert "error" not in res
        assert res["category"] == tag.category and res["scores"] == tag.scores
        assert res["model_version"] == fake_clf.version and res["topic"] == IN
    assert [r.get("request_id") for _, r in got] == ["r1", "r2", "c1", None]
    assert [k or None for k, _ in got] == [b"user-1", None, b"user-2", None]  # the input's key


@pytest.mark.parametrize(("value", "needle"), [
    (b"{not json", "not JSON"),
    (b'{"text": "\xff"}', "invalid UTF-8"),
    (b"42", "expected a JSON object or string"),
    (b'{"prompt": "x"}', 'expected {"text": ...}'),
    (b'{"text": 5}', "text: Input should be a valid string"),
    (b'{"text": null}', "exactly one of"),
    (b'{"text": "a", "metadata": {"prompt_tokens": -1}}', "prompt_tokens"),
    (b'{"request": {"messages": "nope"}}', "request."),
    (b"", "not JSON"),
    (b'{"text": "' + b"x" * 300 + b'"}', "record longer than 100 bytes"),
])
def test_a_bad_record_gets_an_error_record_and_the_consumer_goes_on(fake_clf, value, needle) -> None:
    got = run_adapter(fake_clf, [("one", value, {"key": b"bad"}), ("one", {"text": "hello"}, {})],
                      max_body_bytes=100)
    assert len(got) == 2
    (key, err), (_, ok) = got
    assert key == b"bad" and set(err) == {"error", "topic", "partition", "offset"}
    assert needle in err["error"], err
    assert ok["category"] in fake_clf.labels and "error" not in ok


def test_a_batch_gets_one_result_per_record_in_order(fake_clf) -> None:
    records = [{"text": "hello"}, b"nope", {"text": "world", "request_id": "w"}, {"x": 1}, {"text": "code"}]
    got = run_adapter(fake_clf, [("batch", records, {})], max_batch_size=64)
    assert len(got) == 5
    assert ["error" in r for _, r in got] == [False, True, False, True, False]
    assert got[2][1]["request_id"] == "w"
    assert got[1][1]["error"].startswith("not JSON") and "got keys ['x']" in got[3][1]["error"]


class Broken:
    version = "broken"

    def predict(self, items: list) -> list:
        raise RuntimeError("onnx session gone")


def test_an_inference_failure_answers_every_record_with_an_error(fake_clf) -> None:
    got = run_adapter(Broken(), [("batch", [{"text": "a"}, b"{bad"], {}), ("one", {"text": "b"}, {})])
    assert len(got) == 3
    assert "classification failed: RuntimeError: onnx session gone" in got[0][1]["error"]
    assert all("error" in r for _, r in got)


def test_settings_come_from_env_and_flags(monkeypatch) -> None:
    import service.kafka as kafkamod
    from classifier.cli import main

    monkeypatch.setenv("PROMPT_TAGGER_KAFKA_INPUT_TOPIC", "from-env")
    monkeypatch.setenv("PROMPT_TAGGER_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kafkamod, "run", lambda s, k: seen.update(settings=s, kafka=k))
    assert main(["kafka", "--output-topic", "out-flag", "--model", "/m"]) == 0
    k = seen["kafka"]
    assert (k.input_topic, k.output_topic, k.bootstrap_servers) == ("from-env", "out-flag", "k1:9092,k2:9092")
    assert seen["settings"].model == "/m"
    _, broker = create_kafka_app(Settings(), k, classifier=Broken())  # builds without connecting
    assert broker is not None


def test_importing_the_service_does_not_import_faststream() -> None:
    code = "import sys, service, service.kafka, service.cli; print('faststream' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
