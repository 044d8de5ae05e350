#include "common/result.h"

#include <gtest/gtest.h>

#include <memory>

namespace mesh {
namespace {

Result<int> half(int v) {
  if (v % 2) return Error(errc::invalid_argument, std::to_string(v) + " is odd");
  return v / 2;
}

TEST(Result, HoldsValue) {
  auto r = half(8);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(*r, 4);
  EXPECT_EQ(r.value(), 4);
}

TEST(Result, HoldsErrorWithCodeAndDetail) {
  auto r = half(3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_EQ(r.error().message(), "3 is odd");
  EXPECT_EQ(r.error().code.category().name(), std::string("mesh.common"));
}

TEST(Result, ErrorWithoutDetailUsesCodeMessage) {
  Result<int> r = errc::timeout;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "timed out");
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Result, VoidSuccessAndFailure) {
  Result<void> ok;
  EXPECT_TRUE(ok.ok());
  Result<void> bad = Error(errc::io_error, "disk full");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, errc::io_error);
  EXPECT_EQ(bad.error().message(), "disk full");
}

TEST(Result, EveryCommonCodeHasAMessage) {
  for (int i = 0; i <= static_cast<int>(errc::too_large); ++i) {
    std::string m = make_error_code(static_cast<errc>(i)).message();
    EXPECT_FALSE(m.empty());
    EXPECT_EQ(m.find("unknown error"), std::string::npos) << i;
  }
}

TEST(ResultDeathTest, ValueOfAnErrorAbortsWithMessage) {
  Result<int> r = Error(errc::not_found, "x");
  EXPECT_DEATH((void)r.value(), "check failed: ok\\(\\)");
}

TEST(ResultDeathTest, ErrorOfAValueAborts) {
  Result<int> r = 1;
  EXPECT_DEATH((void)r.error(), "Result::error\\(\\) on a value");
}

TEST(CheckDeathTest, StaysOnInEveryBuild) {
  EXPECT_DEATH(MESH_CHECK(1 + 1 == 3, "arithmetic"), "fatal: check failed: 1 \\+ 1 == 3 \\(arithmetic\\)");
}

}  // namespace
}  // namespace mesh
