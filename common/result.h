#pragma once
// Result<T>: a value or an Error. Functions that can fail return it instead of throwing, so that
// failures cross threads and event-loop handlers as plain values (CONVENTIONS.md: no exceptions
// on the data plane). Error carries an error_code for programs and a detail line for people.

#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "common/assert.h"
#include "common/errc.h"

namespace mesh {

struct Error {
  std::error_code code;
  // One human-readable line: what failed and on what (a key, a file, an address).
  std::string detail;

  Error() = default;
  Error(std::error_code c, std::string d = {}) : code(c), detail(std::move(d)) {}
  template <typename E>
    requires std::is_error_code_enum_v<E>
  Error(E e, std::string d = {}) : code(make_error_code(e)), detail(std::move(d)) {}

  // "detail" when there is one, else the code's own message.
  std::string message() const { return detail.empty() ? code.message() : detail; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}
  template <typename E>
    requires std::is_error_code_enum_v<E>
  Result(E e) : v_(std::in_place_index<1>, Error(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    MESH_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  const T& value() const& {
    MESH_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  T&& value() && {
    MESH_CHECK(ok(), "Result::value() on an error");
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    MESH_CHECK(!ok(), "Result::error() on a value");
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), failed_(true) {}
  template <typename E>
    requires std::is_error_code_enum_v<E>
  Result(E e) : err_(Error(e)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    MESH_CHECK(failed_, "Result::error() on success");
    return err_;
  }

 private:
  Error err_;
  bool failed_ = false;
};

}  // namespace mesh
