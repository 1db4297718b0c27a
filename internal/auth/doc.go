// Package auth decides who a client is and what it may do. The core asks it on connect
// (Authenticator.Authenticate turns a face's Credentials into a Principal) and on every publish
// and subscribe (Principal.Allow, Principal.AllowFilter); faces only pass credentials along and
// never decide themselves.
//
// # Identity
//
// Authenticate tries, in order:
//
//  1. A verified client certificate (Credentials.CertIdentity, extracted by the listener). It is
//     enough on its own, whatever password comes with it, and is not subject to back-off. The
//     identity needs no user record; if one exists, its groups and grants apply.
//  2. A token issued by tern (TokenPrefix "tern_..."), given as Credentials.Token or, over MQTT,
//     as the password with the user name empty or "token". Only its SHA-256 is stored; tokens
//     expire, can be revoked, and carry grants that must lie within their user's.
//  3. The external authorization URL, if configured (URLConfig): isimud's bearer style, or a
//     JSON contract modelled on EMQX's that returns allow/deny/ignore, an identity, grants and a
//     TTL. Decisions are cached; "ignore" continues with the local sources; a URL that is down,
//     slow or misbehaving refuses the client (ErrUnavailable).
//  4. A stored user and password: argon2id in the PHC string format, or an unsalted SHA-256 hash
//     imported from uLightWMQ's users.db (ImportULWMQ), re-hashed with argon2id at the first
//     successful login.
//  5. No credentials: refused (ErrNotAuthorized) unless Config.AllowAnonymous.
//
// Failed credentials from one address lead to growing refusals (BackoffConfig). Every refusal
// is counted in Stats and logged at most once per Config.LogInterval per cause.
//
// # Grants
//
// A Grant allows one Action on the topics an MQTT filter matches, with %u (identity) and %c
// (client id) filled in per principal. Grants come from users, groups, tokens, the external URL,
// Config.DefaultGrants (every authenticated principal) and Config.AnonymousGrants. They are
// compiled into one deterministic automaton per action, so Allow costs one map lookup per topic
// level however many grants there are, and allocates nothing.
//
// A deny grant ("deny:action:filter", Grant.Deny) refuses instead, before any allow: Allow
// refuses a topic a deny matches, AllowFilter a filter the denies cover (every topic it can match
// is denied); a filter that only overlaps a deny is judged by the allows alone. Denies have their
// own automaton per action, so the cost stays the same.
//
// A filter starting with '+' or '#' does not match a topic starting with '$' (the MQTT rule), for
// every action: "#" does not reach $SYS, "$SYS/#" must be granted as such. Members of
// Config.SuperGroup, and every client in open mode, are unrestricted instead: they may do
// everything everywhere, '$' topics included.
//
// # Open mode
//
// With no user, no token, no URL and no anonymous access configured when New runs, the
// Authenticator is open (Open reports it): every client is admitted unrestricted, and the
// broker should warn. Its identity is that of a verified certificate, or empty: a user name is
// not checked, so it is not taken as an identity. Creating the first user or token ends open mode; deleting them all does
// not bring it back until the next start, so a mistaken deletion cannot open the broker.
package auth
