#pragma once
// airlock's public C++ API: bind secrets to hosts, configure the network, build a sandbox config,
// start a sandbox and run commands in it (airlock::Sandbox, linked from airlock::airlock).
#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>
#include <airlock/sandbox.hpp>
#include <airlock/secret.hpp>
#include <airlock/secret_value.hpp>
