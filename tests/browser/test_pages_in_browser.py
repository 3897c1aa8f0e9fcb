"""The pages in a real browser (Debian's headless Chromium through Selenium), against the
middleware with the GitLab and GitHub stand-ins: runs really run in the GitLab stand-in, and
repository managers and trusted users sign in through the GitHub stand-in's OAuth pages.

One site for the module (starting the stand-ins and a pipeline costs seconds); each test
starts signed out. Every page visited is saved as a screenshot and checked with axe-core
(WCAG 2 A and AA: labels, contrast, names, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from axe_selenium_python import Axe
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select

from middleware.models import AuditEntry, Pipeline, Repository, Run, RunAction
from middleware.runs import actions as actions_module
from sandbox.demo_loop import free_port
from tests.browser.conftest import LiveServer, shoot
from tests.middleware.conftest import ADMIN
from tests.middleware.runs_world import GH_TOKEN, RunsWorld, runs_world

OAUTH_ID = "Iv1.browser-tests-client"
OAUTH_SECRET = "browser-tests-oauth-client-secret-0123456789"


@dataclass
class Site:
    world: RunsWorld
    url: str
    other_repo_id: int
    finished_run: int
    job_id: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    port = free_port()
    url = f"http://localhost:{port}"
    tmp = tmp_path_factory.mktemp("browser")
    with runs_world(
        tmp,
        public_url=url,
        github_oauth_client_id=OAUTH_ID,
        github_oauth_client_secret=OAUTH_SECRET,
        session_cookie_secure=True,  # http://localhost is a secure context: Chromium keeps them
    ) as world:
        gh = world.gh.state
        gh.register_oauth_app(OAUTH_ID, OAUTH_SECRET, name="firecrest-ci", callback_url=url)
        gh.add_user("maria")
        gh.set_role("octo-org/hpc-code", "maria", "maintain")
        gh.add_user("newbie")
        gh.add_repo("other-org/secret-code")
        gh.add_repo("octo-org/new-code")
        api = world.app.test_client()
        other = api.post(
            "/api/repositories",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={
                "full_name": "other-org/secret-code",
                "clone_url": "https://github.com/other-org/secret-code.git",
                "notification_token": GH_TOKEN,
                "firecrest_client_id": "other-client",
                "firecrest_client_secret": "other-tenant-secret",
                "trusted_users": ["mallory"],
                "branches": ["main"],
            },
        )
        assert other.status_code == 201, other.get_data(as_text=True)
        sha = world.commit("echo the tests passed")
        finished = world.trigger(sha)
        world.start(finished)
        assert world.wait_finished(finished) == "success"
        run = world.run(finished)
        assert run.gitlab_pipeline_id is not None
        project = world.gitlab.projects.get(f"firecrest-ci/{world.repo_id}/cpu")
        job_id = int(project.pipelines.get(run.gitlab_pipeline_id).jobs.list(get_all=True)[0].id)
        with LiveServer(world.app, port):
            yield Site(world, url, int(other.get_json()["id"]), finished, job_id)


# -- helpers ---------------------------------------------------------------------------------


def wait(driver: WebDriver, seconds: float = 10) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, seconds)


def heading(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def field(driver: WebDriver, label: str, scope: WebElement | None = None) -> WebElement:
    """The input a <label> with this text names (so every field a test fills has a label)."""
    root = scope or driver
    found = root.find_element(By.XPATH, f".//label[normalize-space()='{label}']")
    return driver.find_element(By.ID, str(found.get_attribute("for")))


def click(driver: WebDriver, text: str, scope: WebElement | None = None) -> None:
    """Press a form's button and wait for the answer's page (every button here submits a form):
    looking up fields before it loads finds the old page's, which then go stale."""
    root = scope or driver
    page = driver.find_element(By.TAG_NAME, "html")
    root.find_element(By.XPATH, f".//button[normalize-space()='{text}']").click()
    wait(driver).until(lambda _: left_the_document(page))


def left_the_document(element: WebElement) -> bool:
    """Whether the page holding `element` has been replaced. Mid-navigation Chromium may say so
    as "Node ... does not belong to the document" instead of a stale reference."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def accessible(driver: WebDriver, name: str) -> None:
    """Save a screenshot and fail on any WCAG 2 A/AA violation axe-core finds on the page."""
    shoot(driver, name)
    axe = Axe(driver)
    axe.inject()
    results = axe.run(options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}})
    problems = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})"
        for v in results["violations"]
    ]
    assert not problems, f"{name}: " + "; ".join(problems)


def sign_in_operator(driver: WebDriver, site: Site) -> None:
    driver.get(f"{site.url}/sign-in")
    field(driver, "Admin credential").send_keys(ADMIN)
    click(driver, "Sign in as operator")
    wait(driver).until(ec.url_contains("/repositories"))


def sign_in_github(driver: WebDriver, site: Site, login: str) -> None:
    """Through the GitHub stand-in's consent page, as a person would."""
    driver.get(f"{site.url}/sign-in")
    click(driver, "Sign in with GitHub")
    wait(driver).until(ec.url_contains("/login/oauth/authorize"))
    login_box = driver.find_element(By.CSS_SELECTOR, "input[name=login]")
    login_box.clear()
    login_box.send_keys(login)
    driver.find_element(By.CSS_SELECTOR, "form button, form input[type=submit]").click()
    wait(driver).until(ec.url_contains(site.url))
    wait(driver).until(lambda d: "Sign in" not in heading(d))


def session_client(driver: WebDriver, site: Site) -> httpx.Client:
    """An HTTP client carrying the browser's session cookie (for requests a page offers no form for)."""
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    return httpx.Client(base_url=site.url, cookies=cookies, follow_redirects=False, timeout=10)


def csrf_of_page(driver: WebDriver) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value"))


def stored(site: Site, model: Any, *where: Any) -> list[Any]:
    with site.world.svc.db.session() as session:
        rows = list(session.scalars(select(model).where(*where)))
        for row in rows:
            session.expunge(row)
        return rows


# -- scenarios -------------------------------------------------------------------------------


def test_operator_registers_a_repository_and_adds_two_pipelines(browser: WebDriver, site: Site) -> None:
    driver = browser
    driver.get(f"{site.url}/sign-in")
    accessible(driver, "sign-in")
    # Keyboard only: Tab reaches the credential field, Enter submits.
    body = driver.find_element(By.TAG_NAME, "body")
    body.click()
    for _ in range(12):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("id") == "admin_token":
            break
    assert driver.switch_to.active_element.get_attribute("id") == "admin_token"
    driver.switch_to.active_element.send_keys(ADMIN + Keys.ENTER)
    wait(driver).until(ec.url_contains("/repositories"))
    accessible(driver, "repositories")

    driver.get(f"{site.url}/repositories/new")
    field(driver, "Repository (owner/name)").send_keys("octo-org/new-code")
    field(driver, "Clone URL").send_keys("not a url")
    field(driver, "Notification token").send_keys(GH_TOKEN)
    field(driver, "FirecREST client id").send_keys("new-client")
    field(driver, "FirecREST client secret").send_keys("new-firecrest-secret-value")
    click(driver, "Register")
    # The error sits next to its field, and what was typed (but the secrets) is still there.
    described = str(field(driver, "Clone URL").get_attribute("aria-describedby")).split()
    error = driver.find_element(By.ID, described[-1])
    assert error.text
    assert field(driver, "Repository (owner/name)").get_attribute("value") == "octo-org/new-code"
    assert field(driver, "FirecREST client secret").get_attribute("value") == ""
    accessible(driver, "register-with-errors")
    field(driver, "Clone URL").clear()
    field(driver, "Clone URL").send_keys("https://github.com/octo-org/new-code.git")
    field(driver, "Notification token").send_keys(GH_TOKEN)
    field(driver, "FirecREST client secret").send_keys("new-firecrest-secret-value")
    click(driver, "Register")
    wait(driver).until(lambda d: heading(d) == "Registered octo-org/new-code")
    assert "new-firecrest-secret-value" not in driver.page_source
    accessible(driver, "registered")
    (repo,) = stored(site, Repository, Repository.full_name == "octo-org/new-code")

    driver.get(f"{site.url}/repositories/{repo.id}")
    for name, system in (("cpu", "daint"), ("gpu", "alps")):
        panel = driver.find_element(By.XPATH, "//section[h3[normalize-space()='Add a pipeline']]")
        field(driver, "Name", panel).send_keys(name)
        field(driver, "Entrypoint", panel).send_keys(f"ci/{name}.yml")
        field(driver, "System", panel).send_keys(system)
        click(driver, "Add pipeline", panel)
        added = f"//h3[normalize-space()='Pipeline {name}']"
        wait(driver).until(lambda d, xpath=added: d.find_elements(By.XPATH, xpath))
    accessible(driver, "setup")
    pipelines = stored(site, Pipeline, Pipeline.repository_id == repo.id)
    assert sorted((p.name, p.system) for p in pipelines) == [("cpu", "daint"), ("gpu", "alps")]
    actions = [a.action for a in stored(site, AuditEntry, AuditEntry.repository_id == repo.id)]
    assert actions.count("pipeline.create") == 2 and "repository.create" in actions

    driver.get(f"{site.url}/audit")
    assert "pipeline.create" in driver.page_source
    accessible(driver, "audit")


def test_a_manager_signs_in_with_github_edits_trusted_users_cancels_and_restarts(
    browser: WebDriver, site: Site
) -> None:
    driver, world = browser, site.world
    sign_in_github(driver, site, "maria")
    listed = driver.find_element(By.TAG_NAME, "main").text
    assert "octo-org/hpc-code" in listed
    assert "other-org/secret-code" not in listed and "octo-org/new-code" not in listed

    driver.get(f"{site.url}/repositories/{world.repo_id}")
    users = field(driver, "Trusted users")
    users.clear()
    users.send_keys("trusty\nnewbie")
    click(driver, "Save settings")
    wait(driver).until(lambda d: "newbie" in d.find_element(By.TAG_NAME, "main").text)
    (repo,) = stored(site, Repository, Repository.id == world.repo_id)
    assert {u["login"] for u in repo.trusted_users} == {"trusty", "newbie"}
    assert all(u["id"] for u in repo.trusted_users)
    (entry,) = [
        a for a in stored(site, AuditEntry, AuditEntry.repository_id == world.repo_id) if a.actor == "maria"
    ]
    assert entry.action == "repository.update"

    sha = world.commit("sleep 60")
    running = world.trigger(sha)
    run = world.start(running)
    assert run.gitlab_pipeline_id is not None
    driver.get(f"{site.url}/runs/{running}")
    accessible(driver, "run-running")
    click(driver, "Cancel pipeline")
    wait(driver).until(lambda d: "canceled" in heading(d))
    assert world.pipeline_status(run.gitlab_pipeline_id, "canceled") == "canceled"
    click(driver, "Restart run")
    wait(driver).until(lambda d: d.find_elements(By.XPATH, "//*[contains(., 'restart')]"))
    actions = stored(site, RunAction, RunAction.run_id == running)
    assert [(a.action, a.actor) for a in actions] == [("cancel", "maria"), ("restart", "maria")]
    new_run = actions[1].new_run_id
    assert new_run is not None
    again = world.start(new_run)
    assert again.attempt == 2 and again.requested_by == "maria"
    assert again.gitlab_pipeline_id not in (None, run.gitlab_pipeline_id)
    actions_module.cancel(world.control, new_run, "tests")  # its job sleeps: stop it


def test_a_trusted_user_sees_the_runs_and_restarts_one(browser: WebDriver, site: Site) -> None:
    driver, world = browser, site.world
    sign_in_github(driver, site, "trusty")
    driver.get(f"{site.url}/repositories/{world.repo_id}/runs")
    assert f"/runs/{site.finished_run}" in driver.page_source
    accessible(driver, "runs")
    driver.get(f"{site.url}/repositories/{world.repo_id}/runs?state=success")
    assert f"/runs/{site.finished_run}" in driver.page_source
    driver.get(f"{site.url}/runs/{site.finished_run}/jobs/{site.job_id}")
    log = driver.find_element(By.TAG_NAME, "main").text
    assert "building" in log and "<b>bold?</b>" in log
    assert "firecrest-client-secret-9f8e7d6c" not in driver.page_source
    assert "pipeline-secret-" not in driver.page_source
    accessible(driver, "job-log")
    driver.get(f"{site.url}/runs/{site.finished_run}")
    before = len(stored(site, Run, Run.sha == world.run(site.finished_run).sha))
    click(driver, "Restart run")
    wait(driver).until(lambda d: len(stored(site, Run, Run.sha == world.run(site.finished_run).sha)) > before)
    recorded = stored(site, RunAction, RunAction.run_id == site.finished_run)
    (action,) = [a for a in recorded if a.actor == "trusty"]
    assert action.action == "restart" and action.new_run_id
    # A trusted user sees runs, but the repository's settings are the managers'.
    driver.get(f"{site.url}/repositories/{world.repo_id}")
    assert heading(driver) == "Not allowed"


def test_an_outsider_gets_403_on_every_page_and_action(browser: WebDriver, site: Site) -> None:
    driver, world = browser, site.world
    sign_in_github(driver, site, "mallory")
    assert "octo-org/hpc-code" not in driver.find_element(By.TAG_NAME, "main").text
    repo, run, job = world.repo_id, site.finished_run, site.job_id
    (pipeline,) = stored(site, Pipeline, Pipeline.repository_id == repo, Pipeline.name == "cpu")
    pages = [
        f"/repositories/{repo}",
        f"/repositories/{repo}/runs",
        f"/repositories/{repo}/pipelines/cpu/runs",
        f"/runs/{run}",
        f"/runs/{run}/jobs/{job}",
        "/audit",
        "/repositories/new",
    ]
    for page in pages:
        driver.get(site.url + page)
        assert heading(driver) == "Not allowed", page
    shoot(driver, "forbidden")
    driver.get(f"{site.url}/repositories")
    token = csrf_of_page(driver)  # a valid token: what is refused is who asks, not how
    actions = [
        (f"/repositories/{repo}/settings", {"action": "save", "firecrest_client_id": "x"}),
        (f"/repositories/{repo}/webhook-secret", {}),
        (f"/repositories/{repo}/delete", {"confirm": "octo-org/hpc-code"}),
        (f"/repositories/{repo}/pipelines", {"name": "evil", "entrypoint": "e.yml", "system": "s"}),
        (f"/repositories/{repo}/pipelines/{pipeline.id}", {"entrypoint": "e.yml", "system": "s"}),
        (f"/repositories/{repo}/pipelines/{pipeline.id}/delete", {}),
        (
            f"/repositories/{repo}/pipelines/{pipeline.id}/variables",
            {"variable_name": "A", "variable_value": "x"},
        ),
        (f"/repositories/{repo}/pipelines/{pipeline.id}/variables/delete", {"variable_name": "TOKEN"}),
        (f"/runs/{run}/cancel", {}),
        (f"/runs/{run}/retry", {}),
        (f"/runs/{run}/restart", {}),
    ]
    runs_before = len(stored(site, Run))
    with session_client(driver, site) as client:
        for path, data in actions:
            referer = {"Referer": site.url + "/"}
            answer = client.post(path, data={**data, "csrf_token": token}, headers=referer)
            assert answer.status_code == 403, (path, answer.status_code)
    assert len(stored(site, Run)) == runs_before
    assert [p.name for p in stored(site, Pipeline, Pipeline.repository_id == repo)] == ["cpu", "gpu"]


def test_a_form_posted_without_its_csrf_token_is_refused(browser: WebDriver, site: Site) -> None:
    driver = browser
    sign_in_operator(driver, site)
    driver.get(f"{site.url}/repositories/{site.other_repo_id}")
    form = driver.find_element(By.XPATH, "//form[.//button[normalize-space()='Save settings']]")
    driver.execute_script(
        "arguments[0].querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())", form
    )
    field(driver, "Default account", form).send_keys("changed-without-token")
    click(driver, "Save settings", form)
    wait(driver).until(lambda d: "CSRF" in d.page_source or "400" in d.title or "Bad" in heading(d))
    shoot(driver, "csrf-refused")
    (repo,) = stored(site, Repository, Repository.id == site.other_repo_id)
    assert repo.default_account != "changed-without-token"
