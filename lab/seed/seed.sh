#!/bin/sh
# The lab's one-shot seed: an admin token from the CLI, then the account "lab" gets a
# record_call that uploads every answered call to the receiver, through the HTTP API.
# Runs in FreeSWITCH's network namespace, where callrec's API listens on 127.0.0.1:8000.
set -eu
api=http://127.0.0.1:8000
i=0
until curl -fsS "$api/healthz" >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 60 ] || { echo "seed: callrec's API did not come up" >&2; exit 1; }
  sleep 1
done
token=$(callrec token create --admin --data-dir /var/lib/callrec)
curl -fsS -X PUT "$api/v2/accounts/lab" \
  -H "X-Auth-Token: $token" -H "Content-Type: application/json" \
  -d '{"data":{"name":"callrec lab","record_call":{"format":"wav","record_on_answer":true,"record_min_sec":2,"url":"http://receiver:8080/recordings/","method":"put"}}}'
echo
echo "seed: account lab records every answered call to http://receiver:8080/recordings/"
