// SPDX-License-Identifier: Apache-2.0
// milter_protocol.h: the Sendmail 8 milter wire format (protocol versions 2 to 6), as Postfix's
// src/milter/milter8.c speaks it, on libmilter's own protocol definitions (<libmilter/mfapi.h>,
// <libmilter/mfdef.h>: SMFIC_*, SMFIR_*, SMFIP_*, SMFIF_*, SMFIM_*), as Postfix does with
// USE_LIBMILTER_INCLUDES. Header-only use of libmilter-dev: nothing here links libmilter.
//
// A packet is a 4-byte big-endian length, then that many bytes: one command byte and its data.
//  - MilterPacketDecoder is a state machine fed arbitrary chunks (one byte at a time works). It
//    refuses, as soon as the 4 length bytes show it, a zero length and a length above its bound
//    (default kMaxMilterPacketBytes, Postfix's own bound); after an error it stays failed (the
//    stream cannot be resynchronised: the caller closes the connection). It never holds more than
//    one packet.
//  - parse*() turn a packet's data into typed fields (views into the data; no copies); they fail
//    with a message naming what is malformed and never read past the data.
//  - append*() encode replies onto a string, so that a whole reply sequence (modifications and
//    the final verdict) leaves in one write.
// No I/O, no allocation beyond the packet being assembled.
#pragma once

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace relaykit::milter {

// Postfix sends body and header data in chunks of at most MILTER_CHUNK_SIZE (65,535) bytes and
// refuses packets longer than twice that (milter8.c, XXX_MAX_DATA): a header of up to Postfix's
// header_size_limit (102,400 by default) arrives as one packet. We accept the same bound.
inline constexpr std::size_t kMilterChunkBytes = MILTER_CHUNK_SIZE;
inline constexpr std::size_t kMaxMilterPacketBytes = 2 * kMilterChunkBytes;
// The length prefix of every packet.
inline constexpr std::size_t kMilterLengthBytes = MILTER_LEN_BYTES;
// Protocol versions: libmilter refuses MTAs below 2; 6 is the current one (Postfix's default).
inline constexpr std::uint32_t kMinMilterProtocolVersion = 2;
inline constexpr std::uint32_t kMilterProtocolVersion = SMFI_PROT_VERSION;
// What an MTA that sends no (or a short) option negotiation is assumed to offer (libmilter).
inline constexpr std::uint32_t kV1Actions = SMFI_V1_ACTS;
inline constexpr std::uint32_t kV1Protocol = SMFI_V1_PROT;
// Macro stages of SMFIR_SETSYMLIST / SMFIF_SETSYMLIST: SMFIM_CONNECT (0) ... SMFIM_EOH (6).
inline constexpr std::size_t kMacroStages = SMFIM_LAST + 1;
// Bound on one macro list of the negotiation reply (names only; libmilter has no bound).
inline constexpr std::size_t kMaxMacroListBytes = 1024;

class MilterPacketDecoder {
 public:
  enum class State { kNeedMore, kPacket, kError };

  explicit MilterPacketDecoder(std::size_t maxPacket = kMaxMilterPacketBytes);

  // Consumes bytes from `data` up to and including the end of the first complete packet (or up
  // to the byte that shows an error). Returns the number of bytes consumed. Afterwards state() is
  // kPacket (read command()/data(), then feed the rest), kNeedMore (all of `data` consumed) or
  // kError (see error()). In kPacket, data() is valid until the next feed(); when the packet lay
  // whole inside `data` it points into `data` (no copy).
  std::size_t feed(std::string_view data);

  State state() const { return state_; }
  char command() const { return command_; }
  std::string_view data() const { return view_; }
  // "packet length 0", "packet length 4294967295 over the limit of 131070", ...
  const std::string& error() const { return error_; }
  // True while part of a packet has been received (EOF or a deadline now would truncate it).
  bool inProgress() const { return have_ > 0; }
  // Back to the state of a new decoder (for a new connection), keeping the buffer's memory.
  void reset();

 private:
  void fail(std::string why);

  std::size_t maxPacket_;
  State state_ = State::kNeedMore;
  std::array<unsigned char, kMilterLengthBytes> lengthBytes_{};
  std::size_t have_ = 0;    // bytes of the current packet received (length prefix included)
  std::size_t length_ = 0;  // the current packet's length (command byte included)
  char command_ = 0;
  std::string buffer_;     // a packet that arrived in pieces
  std::string_view view_;  // the data of the packet in kPacket
  std::string error_;
};

// ---- commands (MTA to milter) ----

// SMFIC_OPTNEG: version, offered actions (SMFIF_*), offered protocol steps (SMFIP_*). Fields
// missing from a short packet take libmilter's defaults (kV1Actions, kV1Protocol; 0 is read as
// the default too). Fails on fewer than 4 bytes.
struct OptionNegotiation {
  std::uint32_t version = 0;
  std::uint32_t actions = kV1Actions;
  std::uint32_t protocol = kV1Protocol;
};
StatusOr<OptionNegotiation> parseOptionNegotiation(std::string_view data);

// SMFIC_MACRO: the command the macros belong to, then name/value pairs (NUL-terminated).
// Names are as the MTA sends them ("i", "{auth_authen}").
struct MacroDefinitions {
  char stage = 0;
  std::vector<std::pair<std::string_view, std::string_view>> values;
};
StatusOr<MacroDefinitions> parseMacros(std::string_view data);
// The same into `out` (its vector's capacity is reused: no allocation per packet once warm).
// On error `out` holds what was parsed before the error.
Status parseMacrosInto(std::string_view data, MacroDefinitions* out);

// SMFIC_CONNECT: hostname, family (SMFIA_*), port and address (absent for SMFIA_UNKNOWN). An
// SMFIA_INET6 address loses an "IPv6:" prefix.
struct ConnectInfo {
  std::string_view hostname;
  char family = SMFIA_UNKNOWN;
  std::uint16_t port = 0;
  std::string_view address;
};
StatusOr<ConnectInfo> parseConnect(std::string_view data);

// SMFIC_HEADER: name and value (the value as sent: with its leading space only when
// SMFIP_HDR_LEADSPC was negotiated).
struct HeaderInfo {
  std::string_view name;
  std::string_view value;
};
StatusOr<HeaderInfo> parseHeader(std::string_view data);

// NUL-terminated strings (SMFIC_MAIL/SMFIC_RCPT argv, SMFIC_HELO, SMFIC_UNKNOWN): appended to
// `out` (cleared first). Fails when the data does not end with NUL; an empty packet gives none.
Status splitStrings(std::string_view data, std::vector<std::string_view>* out);

// A name for log lines: "SMFIC_HEADER", or "command 0x7a" for codes outside the protocol.
std::string commandName(char command);

// ---- replies (milter to MTA) ----

// One packet: length, command, data.
void appendPacket(std::string* out, char command, std::string_view data);
// A reply without data: SMFIR_CONTINUE, SMFIR_ACCEPT, SMFIR_REJECT, SMFIR_TEMPFAIL,
// SMFIR_DISCARD, SMFIR_SKIP, SMFIR_PROGRESS, SMFIR_CONN_FAIL, SMFIR_SHUTDOWN.
void appendSimpleReply(std::string* out, char reply);

// The SMFIC_OPTNEG answer; `macroLists[stage]` non-empty asks for those macros at that stage
// (sent only when `actions` has SMFIF_SETSYMLIST; lists longer than kMaxMacroListBytes are cut).
void appendOptionNegotiationReply(std::string* out, std::uint32_t version, std::uint32_t actions,
                                  std::uint32_t protocol,
                                  const std::array<std::string, kMacroStages>& macroLists);
// SMFIR_REPLYCODE: "550 5.7.1 text" (a 4xx or 5xx SMTP reply; the MTA checks it).
void appendReplyCode(std::string* out, std::string_view smtpReply);
// SMFIR_ADDHEADER name, value.
void appendAddHeader(std::string* out, std::string_view name, std::string_view value);
// SMFIR_INSHEADER position, name, value.
void appendInsertHeader(std::string* out, std::uint32_t index, std::string_view name,
                        std::string_view value);
// SMFIR_CHGHEADER index (1-based among headers of that name), name, value ("" deletes).
void appendChangeHeader(std::string* out, std::uint32_t index, std::string_view name,
                        std::string_view value);
// SMFIR_CHGFROM: the address in angle brackets (`address` without them: "a@b" goes out as
// "<a@b>", "" as "<>"), ESMTP arguments (space-separated; none when empty).
void appendChangeFrom(std::string* out, std::string_view address, std::string_view args);
// SMFIR_ADDRCPT, SMFIR_ADDRCPT_PAR (with arguments), SMFIR_DELRCPT.
void appendAddRecipient(std::string* out, std::string_view address, std::string_view args);
void appendDeleteRecipient(std::string* out, std::string_view address);
// SMFIR_QUARANTINE reason.
void appendQuarantine(std::string* out, std::string_view reason);

}  // namespace relaykit::milter
