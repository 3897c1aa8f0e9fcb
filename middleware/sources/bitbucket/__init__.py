"""Bitbucket Cloud (bitbucket.org, REST API 2.0) as a source: signatures, events, short SHAs made
full, pull request pinning, fork fetches, build statuses and comments.

Bitbucket Server and Data Center are out of scope: their webhooks (`repo:refs_changed`,
`X-Request-Id`), REST API (`/rest/api/1.0`, `/rest/build-status`) and user ids differ, so they
would be a provider of their own.
"""
