#pragma once
// `airlock serve`: the machine interface (docs/machine-interface.md) that the SDKs drive.

namespace airlock::cli {

// A sealed memfd holding the command agent (agent/command_agent.c); the caller owns it.
int command_agent_memfd();

}  // namespace airlock::cli
