// AuthToken: one login at a time per endpoint, its result for everyone who asked meanwhile.
#include "backend/etcd/auth_token.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvstore::etcd {
namespace {

// Records what each Get reported.
struct Answers {
  AuthToken::Done Record() {
    return [this](const AuthToken::Result& result) { results.push_back(result); };
  }
  std::vector<AuthToken::Result> results;
};

TEST(AuthTokenTest, WithoutAuthenticationNobodyLogsIn) {
  AuthToken token(/*enabled=*/false);
  int logins = 0;
  Answers answers;
  token.Get([&](AuthToken::Done) { ++logins; }, answers.Record());
  ASSERT_EQ(answers.results.size(), 1u);
  ASSERT_TRUE(answers.results[0].token.ok());
  EXPECT_EQ(*answers.results[0].token, "");
  EXPECT_EQ(logins, 0);
}

TEST(AuthTokenTest, OneLoginAnswersEveryoneWhoAskedMeanwhile) {
  AuthToken token(/*enabled=*/true);
  std::vector<AuthToken::Done> logins;  // started, not finished
  auto login = [&](AuthToken::Done done) { logins.push_back(std::move(done)); };
  Answers answers;
  for (int i = 0; i < 3; ++i) token.Get(login, answers.Record());
  ASSERT_EQ(logins.size(), 1u) << "one login at a time";
  EXPECT_TRUE(answers.results.empty()) << "nobody answered before the login ended";
  EXPECT_EQ(token.Current(), "");

  logins[0](AuthToken::Result(std::string("t1")));
  ASSERT_EQ(answers.results.size(), 3u);
  for (const AuthToken::Result& r : answers.results) {
    ASSERT_TRUE(r.token.ok());
    EXPECT_EQ(*r.token, "t1");
  }
  EXPECT_EQ(token.Current(), "t1");

  // Held: answered at once, without a login.
  token.Get(login, answers.Record());
  ASSERT_EQ(answers.results.size(), 4u);
  EXPECT_EQ(*answers.results[3].token, "t1");
  EXPECT_EQ(logins.size(), 1u);
}

TEST(AuthTokenTest, AFailedLoginReachesEveryWaiterAndTheNextGetLogsInAgain) {
  AuthToken token(/*enabled=*/true);
  std::vector<AuthToken::Done> logins;
  auto login = [&](AuthToken::Done done) { logins.push_back(std::move(done)); };
  Answers answers;
  token.Get(login, answers.Record());
  token.Get(login, answers.Record());
  ASSERT_EQ(logins.size(), 1u);
  logins[0](AuthToken::Result(absl::UnavailableError("no connection"), /*not_sent=*/true));
  ASSERT_EQ(answers.results.size(), 2u);
  for (const AuthToken::Result& r : answers.results) {
    EXPECT_EQ(r.token.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(r.not_sent);
  }
  token.Get(login, answers.Record());
  ASSERT_EQ(logins.size(), 2u) << "a failed login is not remembered";
  logins[1](AuthToken::Result(std::string("t2")));
  EXPECT_EQ(*answers.results.back().token, "t2");

  // A refused token is forgotten: the next Get logs in again.
  token.Invalidate();
  EXPECT_EQ(token.Current(), "");
  token.Get(login, answers.Record());
  EXPECT_EQ(logins.size(), 3u);
}

// A waiter may ask again from its own answer (a call whose login failed retries): no deadlock,
// and that Get starts the next login.
TEST(AuthTokenTest, AnAnswerMayAskAgain) {
  AuthToken token(/*enabled=*/true);
  std::vector<AuthToken::Done> logins;
  auto login = [&](AuthToken::Done done) { logins.push_back(std::move(done)); };
  Answers answers;
  token.Get(login, [&](const AuthToken::Result&) { token.Get(login, answers.Record()); });
  ASSERT_EQ(logins.size(), 1u);
  logins[0](AuthToken::Result(absl::UnauthenticatedError("refused")));
  EXPECT_EQ(logins.size(), 2u);
  logins[1](AuthToken::Result(std::string("t3")));
  ASSERT_EQ(answers.results.size(), 1u);
  EXPECT_EQ(*answers.results[0].token, "t3");
}

}  // namespace
}  // namespace kvstore::etcd
