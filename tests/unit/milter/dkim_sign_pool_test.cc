// SPDX-License-Identifier: Apache-2.0
// dkim_sign_pool_test.cc: the signing worker pool: many jobs from one thread, results back
// through `done` on the workers, every signature verifies; a full queue refuses; destruction
// answers the jobs still queued.
#include "milters/dkim_sign_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "milters/dkim_verify.h"

namespace relaykit::dkim {
namespace {

std::shared_ptr<const DkimKey> key(DkimAlgorithm a) {
  auto k = DkimKey::generate(a, 2048);
  EXPECT_TRUE(k);
  return *k;
}

SignJob makeJob(const std::shared_ptr<const DkimKey>& k, const std::string& body, int n) {
  SignJob job;
  job.signer = std::make_unique<MessageSigner>(std::vector<Canon>{Canon::kRelaxed});
  job.signer->feedBody(body);
  job.signer->finishBody();
  SignatureSpec spec;
  spec.key = k;
  spec.domain = "corp.com";
  spec.selector = "s";
  spec.timestamp = 1796608800;
  job.specs = {spec};
  job.headers = {{"From", " a@corp.com"}, {"Subject", " job " + std::to_string(n)}};
  return job;
}

TEST(DkimSignPoolTest, SignsOffTheCallingThreadAndVerifies) {
  auto rsa = key(DkimAlgorithm::kRsaSha256);
  auto ed = key(DkimAlgorithm::kEd25519Sha256);
  constexpr int kJobs = 40;
  std::mutex m;
  std::condition_variable cv;
  int finished = 0;
  std::vector<std::string> values(kJobs);
  std::atomic<int> onCaller{0};
  std::thread::id caller = std::this_thread::get_id();
  {
    SignPool pool(2, kJobs);
    for (int i = 0; i < kJobs; ++i) {
      const auto& k = i % 2 == 0 ? rsa : ed;
      ASSERT_TRUE(pool.submit(makeJob(k, "body " + std::to_string(i) + "\r\n", i),
                              [&, i](StatusOr<std::vector<std::string>> r) {
                                if (std::this_thread::get_id() == caller) {
                                  ++onCaller;
                                }
                                std::lock_guard<std::mutex> lock(m);
                                values[i] = r ? (*r)[0] : "";
                                ++finished;
                                cv.notify_one();
                              }));
    }
    std::unique_lock<std::mutex> lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return finished == kJobs; }));
  }
  EXPECT_EQ(onCaller.load(), 0);
  for (int i = 0; i < kJobs; ++i) {
    const auto& k = i % 2 == 0 ? rsa : ed;
    std::vector<DkimHeader> delivered = {{"DKIM-Signature", values[i]},
                                         {"From", " a@corp.com"},
                                         {"Subject", " job " + std::to_string(i)}};
    auto results =
        verifyMessage(delivered, "body " + std::to_string(i) + "\r\n",
                      [&](const std::string&, const std::string&,
                          DkimAlgorithm) -> StatusOr<std::shared_ptr<const DkimKey>> { return k; });
    ASSERT_EQ(results.size(), 1u);
    EXPECT_TRUE(results[0].pass) << i << ": " << results[0].reason;
  }
}

TEST(DkimSignPoolTest, FullQueueRefusesAndStopAnswersTheRest) {
  auto ed = key(DkimAlgorithm::kEd25519Sha256);
  std::promise<void> gate;  // the first job's `done` blocks the only worker until released
  std::shared_future<void> opened = gate.get_future().share();
  std::atomic<int> ok{0};
  std::atomic<int> stopped{0};
  auto done = [&](StatusOr<std::vector<std::string>> r) {
    if (r) {
      ++ok;
    } else {
      ++stopped;
    }
  };
  std::thread release;
  {
    SignPool pool(1, 2);
    std::atomic<bool> started{false};
    ASSERT_TRUE(pool.submit(makeJob(ed, "x", 0), [&](StatusOr<std::vector<std::string>> r) {
      started = true;
      opened.wait();
      done(std::move(r));
    }));
    for (int i = 0; i < 1000 && !started; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(started);
    EXPECT_TRUE(pool.submit(makeJob(ed, "x", 1), done));
    EXPECT_TRUE(pool.submit(makeJob(ed, "x", 2), done));
    EXPECT_FALSE(pool.submit(makeJob(ed, "x", 3), done));  // 2 waiting: full
    EXPECT_EQ(pool.queued(), 2u);
    // Released once the destructor has taken the queue (queued() drops to 0): the pool's
    // members live until the destructor returns, which needs this release first.
    SignPool* p = &pool;
    release = std::thread([&gate, p] {
      while (p->queued() != 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      gate.set_value();
    });
  }  // destruction: the running job finishes, the two queued ones are answered with an error
  release.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(stopped.load(), 2);
}

}  // namespace
}  // namespace relaykit::dkim
