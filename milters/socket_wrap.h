// socket_wrap.h: access to the un-wrapped calls of socket_wrap.cc (see there for why they exist).
#pragma once

#include <signal.h>

namespace relaykit::milter {

// sigwait(3) itself, bypassing the wrapper that hides SIGHUP/SIGTERM/SIGINT from libmilter.
int realSigwait(const sigset_t* set, int* sig);

// Marks the calling thread as one that serves a whole libmilter session (session_runner.cc): its
// "is another command waiting?" polls block up to timeoutSeconds instead of returning at once.
void beginSessionThread(int timeoutSeconds);

// True once such a wait of the calling thread timed out or failed: the session must end.
bool sessionWaitFailed();

}  // namespace relaykit::milter
