// SPDX-License-Identifier: Apache-2.0
// endpoint_test.cc: endpoint parsing, listening on port 0, IP networks, the metrics registry.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include "common/endpoint.h"
#include "common/ip_network.h"
#include "common/server/listener.h"
#include "common/server/metrics.h"

namespace relaykit {
namespace {

TEST(EndpointTest, ParsesPostfixForms) {
  auto a = Endpoint::parse("inet:127.0.0.1:10041");
  ASSERT_TRUE(a.isOk());
  EXPECT_EQ(a->kind, Endpoint::Kind::kInet);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 10041);
  auto b = Endpoint::parse("inet:[::1]:10042");
  ASSERT_TRUE(b.isOk());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->toString(), "inet:[::1]:10042");
  auto c = Endpoint::parse("unix:/var/spool/postfix/private/relaykit-map");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(c->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(c->path, "/var/spool/postfix/private/relaykit-map");
  auto d = Endpoint::parse("inet:localhost:25");
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(d->host, "localhost");
  auto e = Endpoint::parse("inet::25");  // all addresses
  ASSERT_TRUE(e.isOk());
  EXPECT_EQ(e->host, "");
}

TEST(EndpointTest, BareHostPortOnlyWhenAllowed) {
  EXPECT_FALSE(Endpoint::parse("127.0.0.1:9441").isOk());
  auto m = Endpoint::parse("127.0.0.1:9441", true);
  ASSERT_TRUE(m.isOk());
  EXPECT_EQ(m->port, 9441);
  EXPECT_TRUE(Endpoint::parse("[::1]:9441", true).isOk());
}

TEST(EndpointTest, Errors) {
  EXPECT_EQ(Endpoint::parse("inet:127.0.0.1").status().message(),
            "invalid endpoint \"inet:127.0.0.1\": expected HOST:PORT");
  EXPECT_EQ(Endpoint::parse("inet:127.0.0.1:99999").status().message(),
            "invalid endpoint \"inet:127.0.0.1:99999\": port out of range");
  EXPECT_EQ(Endpoint::parse("inet:127.0.0.1:x").status().message(),
            "invalid endpoint \"inet:127.0.0.1:x\": invalid port");
  EXPECT_EQ(Endpoint::parse("inet:::1:25").status().message(),
            "invalid endpoint \"inet:::1:25\": write IPv6 addresses in brackets, like "
            "inet:[::1]:PORT");
  EXPECT_EQ(Endpoint::parse("inet:[::1:25").status().message(),
            "invalid endpoint \"inet:[::1:25\": missing ']'");
  EXPECT_EQ(Endpoint::parse("unix:").status().message(), "invalid endpoint \"unix:\": empty path");
  EXPECT_FALSE(Endpoint::parse("unix:/" + std::string(200, 'a')).isOk());
  EXPECT_FALSE(Endpoint::parse("tcp:1.2.3.4:5").isOk());
}

TEST(ListenerTest, InetPortZeroAndConnect) {
  auto ep = Endpoint::parse("inet:127.0.0.1:0");
  auto fd = openListener(*ep);
  ASSERT_TRUE(fd.isOk()) << fd.status().message();
  std::uint16_t port = localPort(*fd);
  EXPECT_NE(port, 0);
  Endpoint target = *ep;
  target.port = port;
  auto client = connectTo(target);
  ASSERT_TRUE(client.isOk()) << client.status().message();
  close(*client);
  close(*fd);
}

TEST(ListenerTest, UnixSocketModeAndStaleFile) {
  std::string path = "/tmp/relaykit-listener-test-" + std::to_string(getpid());
  auto ep = Endpoint::parse("unix:" + path);
  ListenOptions options;
  options.socketMode = 0600;
  auto fd = openListener(*ep, options);
  ASSERT_TRUE(fd.isOk()) << fd.status().message();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // A live socket is not stolen.
  auto second = openListener(*ep, options);
  EXPECT_FALSE(second.isOk());
  close(*fd);
  // A stale one (nobody accepting) is replaced.
  auto third = openListener(*ep, options);
  ASSERT_TRUE(third.isOk()) << third.status().message();
  close(*third);
  unlink(path.c_str());
}

TEST(IpNetworkTest, ParseAndContains) {
  auto net = IpNetwork::parse("10.0.0.0/8");
  ASSERT_TRUE(net.isOk());
  EXPECT_TRUE(net->contains(*IpAddress::parse("10.1.2.3")));
  EXPECT_FALSE(net->contains(*IpAddress::parse("11.1.2.3")));
  EXPECT_TRUE(net->contains(*IpAddress::parse("::ffff:10.9.9.9")));
  auto v6 = IpNetwork::parse("2001:db8::/32");
  ASSERT_TRUE(v6.isOk());
  EXPECT_TRUE(v6->contains(*IpAddress::parse("2001:db8::1")));
  EXPECT_FALSE(v6->contains(*IpAddress::parse("10.1.2.3")));
  auto host = IpNetwork::parse("192.0.2.7");
  ASSERT_TRUE(host.isOk());
  EXPECT_EQ(host->prefixLength, 32);
  EXPECT_EQ(IpNetwork::parse("10.1.2.3/8")->toString(), "10.0.0.0/8");
  EXPECT_FALSE(IpNetwork::parse("10.0.0.0/33").isOk());
  EXPECT_FALSE(IpNetwork::parse("10.0.0/8").isOk());
  EXPECT_FALSE(IpNetwork::parse("10.0.0.0/").isOk());
}

TEST(MetricsTest, TextExposition) {
  MetricsRegistry r;
  auto& requests = r.counter("rk_requests_total", "Requests by map", {"map"});
  requests.labels({"generic"}).inc();
  requests.labels({"generic"}).inc(2);
  requests.labels({"we\"ird"}).inc();
  r.gauge("rk_up", "Up").get().set(1);
  auto& h = r.histogram("rk_latency_seconds", "Latency", {}, {0.001, 0.01});
  h.get().observe(0.0005);
  h.get().observe(0.005);
  h.get().observe(1);
  EXPECT_EQ(&r.counter("rk_requests_total", "again", {"map"}), &requests);
  EXPECT_EQ(r.render(),
            "# HELP rk_requests_total Requests by map\n"
            "# TYPE rk_requests_total counter\n"
            "rk_requests_total{map=\"generic\"} 3\n"
            "rk_requests_total{map=\"we\\\"ird\"} 1\n"
            "# HELP rk_up Up\n"
            "# TYPE rk_up gauge\n"
            "rk_up 1\n"
            "# HELP rk_latency_seconds Latency\n"
            "# TYPE rk_latency_seconds histogram\n"
            "rk_latency_seconds_bucket{le=\"0.001\"} 1\n"
            "rk_latency_seconds_bucket{le=\"0.01\"} 2\n"
            "rk_latency_seconds_bucket{le=\"+Inf\"} 3\n"
            "rk_latency_seconds_sum 1.0055\n"
            "rk_latency_seconds_count 3\n");
}

TEST(MetricsTest, ServesOverHttpOnItsOwnThread) {
  MetricsRegistry r;
  r.counter("rk_x_total", "X").get().inc(5);
  auto t = MetricsThread::start(*Endpoint::parse("inet:127.0.0.1:0"), &r);
  ASSERT_TRUE(t.isOk()) << t.status().message();
  Endpoint ep = *Endpoint::parse("inet:127.0.0.1:0");
  ep.port = (*t)->port();
  auto fd = connectTo(ep);
  ASSERT_TRUE(fd.isOk());
  std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
  ASSERT_EQ(write(*fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(*fd, buf, sizeof buf)) > 0) {
    resp.append(buf, static_cast<std::size_t>(n));
  }
  close(*fd);
  EXPECT_EQ(resp.rfind("HTTP/1.0 200", 0), 0u) << resp;
  EXPECT_NE(resp.find("rk_x_total 5\n"), std::string::npos) << resp;
}

}  // namespace
}  // namespace relaykit
