"""Dev stand-in S3 endpoint: moto's server on 0.0.0.0:5000, with the buckets in S3_DEV_BUCKETS created.

Not for production (in memory, no credential checks); see the Dockerfile beside this file.
"""

from __future__ import annotations

import os
import re
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer

PORT = int(os.environ.get("S3_DEV_PORT", "5000"))


def main() -> None:
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=PORT)
    server.start()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{PORT}",
        region_name="us-east-1",
        aws_access_key_id="dev",
        aws_secret_access_key="dev",
    )
    for bucket in re.split(r"[\s,]+", os.environ.get("S3_DEV_BUCKETS", "").strip()):
        if bucket:
            client.create_bucket(Bucket=bucket)
            print(f"s3-dev: bucket {bucket!r} created", flush=True)
    print(f"s3-dev: serving S3 on 0.0.0.0:{PORT} (in memory; a dev stand-in, not for production)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
