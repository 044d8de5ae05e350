#pragma once
// The one way to include Boost.Asio in this project. Boost 1.74's awaitable.hpp uses
// std::exchange without including <utility>, which g++ 12 in C++20 mode rejects; including it
// first fixes that. Include this only in .cc files: asio costs about 3.6 s per translation unit.

#include <utility>

// Boost 1.74 enables co_await under clang only with <experimental/coroutine> (libc++'s, before
// clang 14); with libstdc++, clang 14 has C++20's <coroutine>, which asio uses once told. (The
// fuzz and sanitizer builds use clang; the proxy's connections are coroutines.)
#if defined(__clang__) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && defined(__cpp_impl_coroutine) && __has_include(<coroutine>)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#endif

#include <boost/asio.hpp>
