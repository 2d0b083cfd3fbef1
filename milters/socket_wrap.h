// socket_wrap.h: access to the un-wrapped calls of socket_wrap.cc (see there for why they exist).
#pragma once

#include <signal.h>

namespace relaykit::milter {

// sigwait(3) itself, bypassing the wrapper that hides SIGHUP/SIGTERM/SIGINT from libmilter.
int realSigwait(const sigset_t* set, int* sig);

}  // namespace relaykit::milter
