"""One pull-request comment per review, created once and updated in place (GitHub's REST API, no client library).

Reads what GitHub Actions sets: GITHUB_REPOSITORY (owner/name), GITHUB_TOKEN (or GH_TOKEN) and
GITHUB_API_URL (https://api.github.com on github.com; tests point it at a fake server on 127.0.0.1).
"""

import json
import os
import urllib.error
import urllib.request

from fmnist.stage_runner import StageError


def _request(method: str, url: str, token: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _settings() -> tuple[str, str, str]:
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN", "")
    if not repository or not token:
        raise StageError("posting a comment needs GITHUB_REPOSITORY and GITHUB_TOKEN in the environment")
    return api, repository, token


def find_comment(api: str, repository: str, token: str, number: int, marker: str) -> int | None:
    """The id of the first comment on the pull request that starts with `marker`, reading every page."""
    page = 1
    while True:
        url = f"{api}/repos/{repository}/issues/{number}/comments?per_page=100&page={page}"
        comments = _request("GET", url, token)
        for comment in comments:
            if comment.get("body", "").startswith(marker):
                return comment["id"]
        if len(comments) < 100:
            return None
        page += 1


def post_or_update_comment(number: int, body: str, marker: str) -> str:
    """Update the review comment if there is one, else create it; returns what was done, in one line.

    A token that may not comment (a pull request from a fork gets a read-only one) is not an error of
    the review: the report is still in the job summary, and the checks still decide the exit code.
    """
    api, repository, token = _settings()
    try:
        existing = find_comment(api, repository, token, number, marker)
        if existing is None:
            created = _request("POST", f"{api}/repos/{repository}/issues/{number}/comments", token, {"body": body})
            return f"created comment {created['id']} on pull request #{number}"
        _request("PATCH", f"{api}/repos/{repository}/issues/comments/{existing}", token, {"body": body})
        return f"updated comment {existing} on pull request #{number}"
    except urllib.error.HTTPError as error:
        if error.code in (401, 403, 404):
            return f"warning: comment not posted on pull request #{number}: HTTP {error.code} {error.reason}"
        raise StageError(f"GitHub API {error.url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise StageError(f"GitHub API {api}: {error.reason}") from None
