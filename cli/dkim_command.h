// SPDX-License-Identifier: Apache-2.0
// dkim_command.h: `relaykit dkim keygen|dns|verify` (see dkim_command.cc).
#pragma once

#include <CLI/CLI.hpp>

namespace relaykit {

// `relaykit dkim keygen --domain D --selector S --out FILE [--algorithm rsa|ed25519]
//   [--bits N] [--group NAME] [--force]`: writes a new PKCS#8 PEM private key (mode 0600, or
//   0640 owned by --group), then prints its DNS TXT record. Exit 0, 1 on failure, 2 usage.
// `relaykit dkim dns (--key FILE --domain D --selector S | -c CONFIG)`: prints the TXT record of a
//   key file, or of every key in the configuration's milter.dkim.keys. Exit 0, 1 on failure.
// `relaykit dkim verify MESSAGE (--key FILE | --txt RECORD)...`: checks every DKIM-Signature of
//   the message file against the given keys (no DNS). One line per signature. Exit 0 when there
//   is at least one signature and all pass, 1 otherwise, 2 usage or unreadable input.
void addDkimCommand(CLI::App& app, int* exitCode);

}  // namespace relaykit
