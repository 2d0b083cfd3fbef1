// SPDX-License-Identifier: Apache-2.0
// rewrite_command.h: `relaykit rewrite`. Register in cli/main.cc with
// addRewriteCommand(app, &exitCode); link relaykit_milter_core into the `relaykit` target.
#pragma once

#include <CLI/CLI.hpp>

namespace relaykit {

// `relaykit rewrite -c FILE [--sender ADDR] [--rcpt ADDR]... [--client IP] [--sasl USER]
// [--helo NAME] [--queue-id ID] [--diff-only] [--size-limit BYTES] [--non-smtpd] [--time T]
// [MESSAGE]`: runs the message (a file, or stdin when absent or "-") through the `milter:` rules
// exactly as relaykit-milter would, prints the rewritten message on stdout and what changed
// (envelope sender, header diff, notes, the log line) on stderr. With `milter: dkim:` the result
// is signed as relaykit-milter would sign it: the DKIM-Signature headers are part of the message
// and the diff, and a "dkim:" line says what happened; without --client the message counts as a
// local (non_smtpd) submission. A message larger than --size-limit (default Postfix's
// message_size_limit, 10240000) is refused. Exit 0 done, 1 a table lookup failed (what on_error
// would act on), 2 usage, configuration or read error.
void addRewriteCommand(CLI::App& app, int* exitCode);

}  // namespace relaykit
