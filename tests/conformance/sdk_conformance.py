"""PhonePe's own Python SDK (PyPI `phonepe-pg-sdk-python`) against phonepe-sim.

Run by tests/it/phonepe_v2.rs (`the_official_python_sdk_accepts_the_simulator`) with
SIM_URL=http://127.0.0.1:PORT and SIM_PREFIX=/apis/pg-sandbox, after it scripted:
  SDK-PAID completed 49900, SDK-FAILED failed, SDK-PENDING pending,
  SDK-OTHERM completed 49900 for another merchant.
The SDK's hosts are module constants: they are pointed at the simulator before the client is
built. Checks: the SDK gets a token, get_order_status parses every scenario (and an unknown
order is the SDK's ResourceNotFound), validate_callback accepts the simulator's v2 webhook
deliveries and refuses one checked with the wrong password. Prints "conformance: ok" at the end;
any failure raises (non-zero exit) with what differed.
"""

import http.server
import json
import os
import threading
import urllib.request

SIM_URL = os.environ["SIM_URL"].rstrip("/")
BASE = SIM_URL + os.environ.get("SIM_PREFIX", "/apis/pg-sandbox")

# Point the SDK at the simulator. env.py copies the constants at import time, so patch both.
import phonepe.sdk.pg.common.constants.base_urls as base_urls  # noqa: E402
import phonepe.sdk.pg.env as sdk_env  # noqa: E402

for module in (base_urls, sdk_env):
    module.SANDBOX_PG_BASE_URL = BASE
    module.SANDBOX_OAUTH_BASE_URL = BASE

from phonepe.sdk.pg.common.exceptions import PhonePeException, ResourceNotFound  # noqa: E402
from phonepe.sdk.pg.env import Env  # noqa: E402
from phonepe.sdk.pg.payments.v2.standard_checkout_client import StandardCheckoutClient  # noqa: E402

AMOUNT = 49900
USERNAME, PASSWORD = "webhook-user", "webhook-pass"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


client = StandardCheckoutClient.get_instance(
    client_id="TESTCLIENT",
    client_secret="test-client-secret",
    client_version=1,
    env=Env.SANDBOX,
    should_publish_events=False,
)

expected = {
    "SDK-PAID": ("COMPLETED", AMOUNT, None),
    "SDK-FAILED": ("FAILED", None, None),
    "SDK-PENDING": ("PENDING", None, None),
    "SDK-OTHERM": ("COMPLETED", AMOUNT, "OTHERMERCHANT"),
}
for order_id, (state, amount, merchant) in expected.items():
    status = client.get_order_status(order_id)
    check(status.state == state, f"{order_id}: state {status.state!r}, expected {state!r}")
    check(status.merchant_order_id == order_id, f"{order_id}: merchantOrderId {status.merchant_order_id!r}")
    if amount is not None:
        check(status.amount == amount, f"{order_id}: amount {status.amount!r}")
    check(status.merchant_id == merchant, f"{order_id}: merchantId {status.merchant_id!r}")
    details = status.payment_details or []
    check(len(details) == 1, f"{order_id}: {len(details)} paymentDetails")
    check(details[0].state == state, f"{order_id}: attempt state {details[0].state!r}")
    check(bool(details[0].transaction_id), f"{order_id}: attempt without transactionId")
    print(f"conformance: get_order_status {order_id} -> {status.state}")

try:
    client.get_order_status("SDK-UNKNOWN")
    raise AssertionError("an unknown order did not raise")
except ResourceNotFound as e:
    check(e.code == "ORDER_NOT_FOUND", f"unknown order code {e.code!r}")
    print("conformance: get_order_status SDK-UNKNOWN -> ResourceNotFound ORDER_NOT_FOUND")

# Webhooks: a receiver on a free port; the simulator's admin API sends the deliveries.
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        received.append((self.headers.get("Authorization"), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"

for order_id, event in (("SDK-PAID", "checkout.order.completed"), ("SDK-FAILED", "checkout.order.failed")):
    request = urllib.request.Request(
        SIM_URL + "/__sim/webhooks",
        data=json.dumps({"url": hook_url, "merchantTransactionId": order_id, "version": "v2"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        check(json.load(answer).get("deliveredStatus") == 200, f"{order_id}: webhook not delivered")
    header, body = received[-1]
    callback = client.validate_callback(USERNAME, PASSWORD, header, body)
    check(callback.event == event, f"{order_id}: event {callback.event!r}")
    check(callback.payload.merchant_order_id == order_id, f"{order_id}: payload merchantOrderId")
    check(callback.payload.merchant_id == "MERCHANTUAT", f"{order_id}: payload merchantId")
    check(callback.payload.state == event.split(".")[-1].upper(), f"{order_id}: payload state")
    if order_id == "SDK-PAID":
        check(callback.payload.amount == AMOUNT, f"{order_id}: payload amount {callback.payload.amount!r}")
    try:
        client.validate_callback(USERNAME, "wrong-password", header, body)
        raise AssertionError("validate_callback accepted the wrong password")
    except PhonePeException as e:
        check(e.http_status_code == 417, f"wrong password: {e.http_status_code}")
    print(f"conformance: validate_callback {order_id} -> {callback.event}")

server.shutdown()
client.close()
print("conformance: ok")
