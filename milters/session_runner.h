// session_runner.h: runs each libmilter session on one thread from start to end (see .cc).
#pragma once

namespace relaykit::milter {

// The idle timeout of a session (libmilter's own I/O timeout, smfi_settimeout); call before
// smfi_main.
void setSessionTimeout(int seconds);

// At most this many sessions are served at once (milter.max_sessions); call before smfi_main.
void setSessionLimit(int sessions);

// Sessions being served now (for tests and metrics).
int activeSessions();

}  // namespace relaykit::milter
