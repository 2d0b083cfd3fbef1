// SPDX-License-Identifier: Apache-2.0
// milter_service.cc: the milter Service (sessions, slots, signing pool, reload); its
// per-connection handler is in milter_connection.cc. See milter_service.h.
#include "milters/milter_service.h"

#include <event2/event.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "common/server/logging.h"
#include "milters/milter_connection.h"

namespace relaykit::milter {

namespace {

using Clock = std::chrono::steady_clock;

// Test hook: RELAYKIT_MILTER_FAULT=slow-sign holds every signing result on its worker thread for
// kSlowSignDelay, so a test can see that other sessions are answered meanwhile.
constexpr auto kSlowSignDelay = std::chrono::seconds(2);
bool slowSign() {
  static const bool slow = [] {
    const char* v = std::getenv("RELAYKIT_MILTER_FAULT");
    return v != nullptr && std::string(v) == "slow-sign";
  }();
  return slow;
}

// At most one "sessions busy" line per this interval.
constexpr auto kFullLogInterval = std::chrono::seconds(10);

}  // namespace

MilterService::MilterService() = default;

MilterService::~MilterService() {
  pool_.reset();  // its last callbacks post into done_
  if (doneEvent_ != nullptr) {
    event_free(doneEvent_);
  }
  if (doneFd_ >= 0) {
    ::close(doneFd_);
  }
}

bool MilterService::submitSign(MilterConnection* c, dkim::SignJob job) {
  if (!pool_) {
    return false;
  }
  const std::uint64_t ticket = nextTicket_++;
  const bool queued =
      pool_->submit(std::move(job), [this, ticket](StatusOr<std::vector<std::string>> result) {
        // Worker thread: post only.
        if (slowSign()) {
          std::this_thread::sleep_for(kSlowSignDelay);
        }
        {
          std::lock_guard<std::mutex> lock(doneMutex_);
          done_.emplace_back(ticket, std::move(result));
        }
        const std::uint64_t one = 1;
        ssize_t n = ::write(doneFd_, &one, sizeof(one));
        (void)n;
      });
  if (queued) {
    signing_[ticket] = c;
    ticketOf_[c] = ticket;
  }
  return queued;
}

void MilterService::forget(MilterConnection* c) {
  auto it = ticketOf_.find(c);
  if (it != ticketOf_.end()) {
    signing_.erase(it->second);
    ticketOf_.erase(it);
  }
}

void MilterService::onSigned(int fd, short what, void* arg) {
  (void)what;
  std::uint64_t count = 0;
  ssize_t n = ::read(fd, &count, sizeof(count));
  (void)n;
  static_cast<MilterService*>(arg)->deliverSigned();
}

void MilterService::deliverSigned() {
  std::vector<std::pair<std::uint64_t, StatusOr<std::vector<std::string>>>> results;
  {
    std::lock_guard<std::mutex> lock(doneMutex_);
    results.swap(done_);
  }
  for (auto& [ticket, result] : results) {
    auto it = signing_.find(ticket);
    if (it == signing_.end()) {
      continue;  // the connection closed meanwhile
    }
    MilterConnection* c = it->second;
    signing_.erase(it);
    ticketOf_.erase(c);
    c->signatureReady(std::move(result));
  }
}

bool MilterService::configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                              bool install) {
  std::shared_ptr<const MilterConfig> compiled;
  if (install) {
    std::lock_guard<std::mutex> lock(pendingMutex_);
    if (pendingFor_ == config.get()) {
      compiled = std::move(pending_);
    }
    pendingFor_ = nullptr;
    pending_.reset();
  }
  if (!compiled) {
    compiled = parseMilterConfig(config, diags);
  }
  if (!compiled) {
    return false;  // the skeleton logs the problems, then "reload refused"
  }
  if (!install) {
    if (configured_) {
      std::lock_guard<std::mutex> lock(pendingMutex_);
      pendingFor_ = config.get();
      pending_ = compiled;
    }
    return true;
  }
  if (!configured_) {
    maxSessions_ = static_cast<std::size_t>(compiled->maxSessions);
    serving_.reserve(std::min<std::size_t>(maxSessions_, 4096));
    configured_ = true;
  } else {
    if (static_cast<std::size_t>(compiled->maxSessions) != maxSessions_) {
      logWarning("reload: max_sessions changed; a restart is needed for it to take effect");
    }
    logInfo("reload: configuration loaded");
  }
  setActiveConfig(std::move(compiled));
  return true;
}

Status MilterService::start(event_base* base, MetricsRegistry* metrics) {
  initMilterMetrics(metrics);
  doneFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (doneFd_ < 0) {
    return Status::error("eventfd for the DKIM signing pool failed");
  }
  doneEvent_ = event_new(base, doneFd_, EV_READ | EV_PERSIST, &MilterService::onSigned, this);
  if (doneEvent_ == nullptr || event_add(doneEvent_, nullptr) != 0) {
    return Status::error("cannot watch the DKIM signing pool's eventfd");
  }
  // Each session has at most one job out, so a queue of max_sessions is never full.
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<dkim::SignPool>(static_cast<int>(std::min(cpus, kMilterSignWorkersMax)),
                                           std::max<std::size_t>(maxSessions_, 1));
  activeGauge_ = &metrics
                      ->gauge("relaykit_milter_sessions",
                              "Milter sessions being served (at most milter.max_sessions)")
                      .get();
  waitingGauge_ =
      &metrics->gauge("relaykit_milter_sessions_waiting", "Milter sessions waiting for a slot")
           .get();
  closed_ = &metrics->counter("relaykit_milter_sessions_closed_total",
                              "Milter connections closed, by reason", {"reason"});
  if (std::getenv("RELAYKIT_MILTER_FAULT") != nullptr) {
    logWarning("RELAYKIT_MILTER_FAULT is set: a test hook that fails messages on purpose");
  }
  started_ = true;
  return Status::ok();
}

void MilterService::stop() {
  stopping_ = true;
}

Health MilterService::health() const {
  if (!started_ || stopping_) {
    return Health::unavailable("not accepting connections");
  }
  if (active_ >= maxSessions_) {
    return Health::unavailable("saturated: " + std::to_string(active_) +
                               " sessions busy (max_sessions), " + std::to_string(waiting_.size()) +
                               " waiting");
  }
  return Health::ok();
}

ServerLimits MilterService::limits() const {
  ServerLimits limits;
  limits.idleTimeout = kSessionIdleTimeout;
  // Each burst is consumed whole (a partial packet moves into the decoder), so unconsumed input
  // is at most what a waiting session sent after its first packet.
  limits.maxInputBytes = kMaxMilterPacketBytes + kMilterLengthBytes;
  limits.maxConnections = maxSessions_ + std::max(maxSessions_, kMinWaitingConnections);
  return limits;
}

std::unique_ptr<SessionParts> MilterService::takeParts() {
  if (spareParts_.empty()) {
    return std::make_unique<SessionParts>();
  }
  std::unique_ptr<SessionParts> parts = std::move(spareParts_.back());
  spareParts_.pop_back();
  parts->filter.reset(activeConfig());  // as a new filter starts
  return parts;
}

void MilterService::recycleParts(std::unique_ptr<SessionParts> parts) {
  if (!parts) {
    return;
  }
  parts->reset();  // now, not when taken: the previous session's data goes with its connection
  if (spareParts_.size() < kSpareSessionParts) {
    spareParts_.push_back(std::move(parts));
  }
}

std::unique_ptr<ConnectionHandler> MilterService::newConnection(Connection& conn) {
  return std::make_unique<MilterConnection>(this, conn);
}

bool MilterService::admit(MilterConnection* c) {
  // An idle session's slot is taken back first; its release may go to an earlier waiter.
  while (active_ >= maxSessions_ && evictIdle()) {
  }
  if (active_ < maxSessions_) {
    ++active_;
    addServing(c);
    if (activeGauge_ != nullptr) {
      activeGauge_->set(static_cast<double>(active_));
    }
    return true;
  }
  waiting_.push_back(c);
  if (waitingGauge_ != nullptr) {
    waitingGauge_->set(static_cast<double>(waiting_.size()));
  }
  warnFull();
  return false;
}

void MilterService::release(MilterConnection* c) {
  if (!c->serving()) {
    auto it = std::find(waiting_.begin(), waiting_.end(), c);
    if (it != waiting_.end()) {
      waiting_.erase(it);
    }
  } else if (removeServing(c) && active_ > 0) {
    --active_;
    // The slot goes to the longest-waiting session (unless the daemon is stopping).
    if (!stopping_ && !waiting_.empty()) {
      MilterConnection* next = waiting_.front();
      waiting_.pop_front();
      ++active_;
      addServing(next);
      next->grant();
    }
  }
  if (activeGauge_ != nullptr) {
    activeGauge_->set(static_cast<double>(active_));
    waitingGauge_->set(static_cast<double>(waiting_.size()));
  }
}

void MilterService::addServing(MilterConnection* c) {
  c->servingIndex_ = serving_.size();
  serving_.push_back(c);
}

bool MilterService::removeServing(MilterConnection* c) {
  const std::size_t i = c->servingIndex_;
  if (i >= serving_.size() || serving_[i] != c) {
    return false;
  }
  serving_[i] = serving_.back();
  serving_[i]->servingIndex_ = i;
  serving_.pop_back();
  c->servingIndex_ = MilterConnection::kNotServing;
  return true;
}

void MilterService::countClose(const char* reason) {
  if (closed_ == nullptr) {
    return;
  }
  for (const auto& [known, counter] : closedByReason_) {
    if (known == reason) {
      counter->inc();
      return;
    }
  }
  Counter& counter = closed_->labels({reason});
  closedByReason_.emplace_back(reason, &counter);
  counter.inc();
}

bool MilterService::evictIdle() {
  const std::int64_t cutoffMs = Connection::steadyMs(Clock::now() - kEvictIdleAfter);
  MilterConnection* oldest = nullptr;
  for (MilterConnection* c : serving_) {
    if (c->evictable(cutoffMs) &&
        (oldest == nullptr || c->lastActiveMs() < oldest->lastActiveMs())) {
      oldest = c;
    }
  }
  if (oldest == nullptr) {
    return false;
  }
  oldest->evict();
  return true;
}

void MilterService::warnFull() {
  const auto now = Clock::now();
  if (now - lastFullLog_ >= kFullLogInterval) {
    lastFullLog_ = now;
    logWarning("milter: " + std::to_string(maxSessions_) +
               " sessions busy (max_sessions): new Postfix connections wait; " +
               std::to_string(waiting_.size()) + " waiting");
  }
}

}  // namespace relaykit::milter
