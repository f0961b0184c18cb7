#pragma once
// airlock's public C++ API: bind secrets to hosts, configure the network, build a sandbox config.
#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>
#include <airlock/secret.hpp>
#include <airlock/secret_value.hpp>
