// phony's dashboard: live job progress. Every page works without this script; with it,
// "Snapshot now" shows its job's progress in place and the new marker appears without a
// reload, and a job's page follows the job until it ends.
"use strict";

const JSON_ACCEPT = { Accept: "application/json" };

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// A JSON answer; a session that ended sends the browser to the sign-in page.
async function getJSON(url, init) {
  const answer = await fetch(url, { credentials: "same-origin", ...init, headers: JSON_ACCEPT });
  const body = await answer.json().catch(() => ({}));
  if (answer.status === 401 && body.sign_in) {
    location.href = body.sign_in;
    throw new Error("signed out");
  }
  return { ok: answer.ok, status: answer.status, body };
}

// Polls a job's status until it ends; `show(text, status)` on every answer.
async function follow(url, show) {
  for (;;) {
    const { ok, body } = await getJSON(url);
    if (!ok) {
      show(body.error || "The job could not be read.", "failed");
      return { finished: false };
    }
    show(body.text, body.status);
    if (body.finished) return body;
    await sleep(500);
  }
}

// The timeline's axis starts scrolled to its end, where `Current` is.
function scrollAxes() {
  document.querySelectorAll(".axis-wrap").forEach((wrap) => {
    wrap.scrollLeft = wrap.scrollWidth;
  });
}

// Replaces the timeline section with a fresh one from the server.
async function refresh(section, url) {
  const answer = await fetch(url, { credentials: "same-origin" });
  if (answer.redirected || !answer.ok) {
    location.reload();
    return;
  }
  section.innerHTML = await answer.text();
  scrollAxes();
}

// Forms that start a job ("Snapshot now"): queued, followed, then the timeline refreshed.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.hasAttribute("data-job-form")) return;
  event.preventDefault();
  const status = form.querySelector("[data-job-status]");
  const button = form.querySelector("button[type=submit]");
  const section = document.getElementById("timeline");
  const show = (text, state) => {
    status.textContent = text;
    status.dataset.state = state || "";
  };
  button.disabled = true;
  show("Queuing…", "queued");
  try {
    const body = new URLSearchParams(new FormData(form));
    const queued = await getJSON(form.action, { method: "POST", body });
    if (!queued.ok) {
      show(queued.body.error || `Refused (${queued.status}).`, "failed");
      return;
    }
    if (section && form.dataset.refresh) await refresh(section, form.dataset.refresh);
    const done = await follow(queued.body.status, show);
    if (done.status === "succeeded") form.reset();
    if (section && form.dataset.refresh) await refresh(section, form.dataset.refresh);
  } catch (e) {
    if (e.message !== "signed out") show(`The server could not be reached: ${e.message}`, "failed");
  } finally {
    button.disabled = false;
  }
});

// A page showing a job that has not ended: follow it, then show the finished page.
document.addEventListener("DOMContentLoaded", () => {
  scrollAxes();
  document.querySelectorAll("[data-poll-job]").forEach(async (el) => {
    const status = el.matches("[data-job-status]") ? el : el.querySelector("[data-job-status]");
    const done = await follow(el.dataset.pollJob, (text) => {
      if (status) status.textContent = text;
    });
    if (done.finished) location.reload();
  });
});

// The schedule form: the next five runs shown as the cron expression and zone are typed
// (the server computes them; nothing is saved until "Save schedule").
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-schedule-form]").forEach((form) => {
    const out = form.querySelector("[data-schedule-preview]");
    let timer = null;
    let asked = 0;
    const update = async () => {
      const cron = form.elements.cron.value.trim();
      if (!cron) {
        out.replaceChildren();
        return;
      }
      const query = new URLSearchParams({ cron, timezone: form.elements.timezone.value.trim() });
      const mine = ++asked;
      try {
        const { ok, body } = await getJSON(`${form.dataset.preview}?${query}`);
        if (mine !== asked) return;
        if (!ok) {
          const line = document.createElement("p");
          line.className = "error";
          line.setAttribute("data-preview-error", "");
          line.textContent = body.error || "The expression could not be read.";
          out.replaceChildren(line);
          return;
        }
        const head = document.createElement("p");
        head.textContent = `The next ${body.runs.length} runs:`;
        const list = document.createElement("ol");
        list.className = "runs";
        body.runs.forEach((run) => {
          const li = document.createElement("li");
          li.setAttribute("data-run", "");
          li.textContent = run;
          list.append(li);
        });
        out.replaceChildren(head, list);
      } catch (e) {
        if (e.message !== "signed out") out.textContent = `The server could not be reached: ${e.message}`;
      }
    };
    form.addEventListener("input", (event) => {
      if (!["cron", "timezone"].includes(event.target.name)) return;
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    });
  });
});
