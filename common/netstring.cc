// SPDX-License-Identifier: Apache-2.0
// netstring.cc: the netstring state machine; see netstring.h for the guarantees.
#include "common/netstring.h"

#include <algorithm>

namespace relaykit {

NetstringDecoder::NetstringDecoder(std::size_t maxLength) : maxLength_(maxLength) {
  maxDigits_ = std::to_string(maxLength_).size();
}

void NetstringDecoder::fail(Error kind, std::string why) {
  state_ = State::kError;
  errorKind_ = kind;
  error_ = std::move(why);
}

std::size_t NetstringDecoder::feed(std::string_view data) {
  if (state_ != State::kNeedMore) {
    return 0;
  }
  std::size_t i = 0;
  while (i < data.size()) {
    switch (phase_) {
      case Phase::kLengthStart:
      case Phase::kLength: {
        char c = data[i];
        if (c == ':' && phase_ == Phase::kLength) {
          ++i;
          phase_ = Phase::kData;
          data_.clear();
          data_.reserve(length_);
          if (length_ == 0) {
            phase_ = Phase::kComma;
          }
          break;
        }
        if (c < '0' || c > '9') {
          fail(Error::kBadLength, phase_ == Phase::kLengthStart
                                      ? "bad length: expected a digit"
                                      : "bad length: expected a digit or ':'");
          return i;
        }
        if (phase_ == Phase::kLength && length_ == 0) {
          fail(Error::kBadLength, "bad length: leading zero");
          return i;
        }
        ++digits_;
        length_ = length_ * 10 + static_cast<std::size_t>(c - '0');
        if (digits_ > maxDigits_ || length_ > maxLength_) {
          fail(Error::kTooLong,
               "netstring too long: more than " + std::to_string(maxLength_) + " bytes");
          return i;
        }
        phase_ = Phase::kLength;
        ++i;
        break;
      }
      case Phase::kData: {
        std::size_t want = length_ - data_.size();
        std::size_t take = std::min(want, data.size() - i);
        data_.append(data.data() + i, take);
        i += take;
        if (data_.size() == length_) {
          phase_ = Phase::kComma;
        }
        break;
      }
      case Phase::kComma:
        if (data[i] != ',') {
          fail(Error::kMissingComma, "missing ',' after netstring data");
          return i;
        }
        ++i;
        state_ = State::kMessage;
        return i;
    }
  }
  return i;
}

std::string NetstringDecoder::takeMessage() {
  std::string out = std::move(data_);
  data_.clear();
  state_ = State::kNeedMore;
  phase_ = Phase::kLengthStart;
  length_ = 0;
  digits_ = 0;
  return out;
}

void appendNetstring(std::string_view data, std::string* out) {
  out->append(std::to_string(data.size()));
  out->push_back(':');
  out->append(data.data(), data.size());
  out->push_back(',');
}

std::string encodeNetstring(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 8);
  appendNetstring(data, &out);
  return out;
}

}  // namespace relaykit
