#pragma once
// The one way to include Boost.Asio in this project. Boost 1.74's awaitable.hpp uses
// std::exchange without including <utility>, which g++ 12 in C++20 mode rejects; including it
// first fixes that. Include this only in .cc files: asio costs about 3.6 s per translation unit.

#include <utility>

#include <boost/asio.hpp>
