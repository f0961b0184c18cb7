"""airlock from Python: untrusted code runs in a Linux sandbox whose environment holds only
placeholders for credentials; airlock's gateway swaps a placeholder for the real value only on
the way to a host the secret allows.

    from airlock import Sandbox, ViolationAction

    with (Sandbox.builder("worker")
            .secret(lambda s: s.env("OPENAI_API_KEY").value(key).allow_host("api.openai.com"))
            .network(lambda n: n.on_secret_violation(ViolationAction.BLOCK_AND_TERMINATE))
            .create()) as sb:
        print(sb.run(["sh", "-c", "echo $OPENAI_API_KEY"]).stdout)   # b'$MSB_OPENAI_API_KEY\\n'

Standard library only. The package drives the airlock binary through its machine interface
(`airlock serve`, docs/machine-interface.md); the values travel over an inherited socket, never
on a command line, in an environment or in a file.
"""
from ._secrets import (MAX_PLACEHOLDER_BYTES, ConfigError, NetworkBuilder, NetworkConfig, Secret, SecretBuilder,
                       SecretEntry, ViolationAction, effective_violation_action)
from ._sandbox import AirlockError, Mount, RunResult, Sandbox, SandboxBuilder, SandboxStopped

__all__ = [
    "AirlockError", "ConfigError", "MAX_PLACEHOLDER_BYTES", "Mount", "NetworkBuilder", "NetworkConfig", "RunResult",
    "Sandbox", "SandboxBuilder", "SandboxStopped", "Secret", "SecretBuilder", "SecretEntry", "ViolationAction",
    "effective_violation_action",
]
