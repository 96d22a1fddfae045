"""Times wechatpy 1.8.18 WeChatCrypto.decrypt_message on wxshop's 1 KB secure-mode push.

Reads the fixture (JSON: query, body) on stdin, as `wxshop-peers push-fixture` prints it, and prints
the median time per decrypt in nanoseconds. wechatpy checks msg_signature, base64, AES-CBC, the
padding and the appid, and parses the XML into a dict (not a typed message).
"""
import json
import sys
import time
from urllib.parse import parse_qs

from wechatpy.crypto import WeChatCrypto

TOKEN = "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"


def main():
    fixture = json.load(sys.stdin)
    q = {k: v[0] for k, v in parse_qs(fixture["query"]).items()}
    body = fixture["body"]
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    args = (body, q["msg_signature"], q["timestamp"], q["nonce"])
    assert "<Content>" in crypto.decrypt_message(*args)
    rounds = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.2:
            for _ in range(16):
                crypto.decrypt_message(*args)
            n += 16
        rounds.append((time.perf_counter() - start) / n * 1e9)
    rounds.sort()
    print(f"{rounds[len(rounds) // 2]:.1f}")


if __name__ == "__main__":
    main()
