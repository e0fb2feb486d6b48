// The mentor page: plain JavaScript against the /v1 API, authorised by the page link.
"use strict";
(function () {
  const token = document.body.dataset.token;
  const mentorPath = "/v1/mentors/" + encodeURIComponent(document.body.dataset.mentor);
  const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const $ = (id) => document.getElementById(id);

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
    if (options.body) headers["Content-Type"] = "application/json";
    const response = await fetch(path, Object.assign({}, options, { headers }));
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || "Request failed (" + response.status + ")");
    return data;
  }

  function say(text) { $("status").textContent = text; }

  // Runs an action, reporting its outcome in the status region; returns false on failure.
  async function attempt(action, done) {
    try {
      await action();
      if (done) say(done);
      return true;
    } catch (error) {
      say("Not saved: " + error.message);
      return false;
    }
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // -- calendars ---------------------------------------------------------------------------

  // The accessible name repeats the calendar's name: every card has the same two choices.
  function choice(type, name, label, calendarName, checked, onChange) {
    const wrapper = element("label", null, "choice");
    const input = document.createElement("input");
    input.type = type;
    input.name = name;
    input.setAttribute("aria-label", calendarName + ": " + label);
    input.checked = checked;
    input.addEventListener("change", onChange);
    wrapper.append(input, document.createTextNode(label));
    return wrapper;
  }

  function calendarCard(calendar) {
    const item = document.createElement("li");
    const kind = calendar.provider === "google" ? "Google" : "CalDAV";
    item.append(element("h3", calendar.name + " (" + kind + ")"));
    item.append(element("p", calendar.last_sync_words, "small"));
    if (calendar.problem) item.append(element("p", calendar.problem, "problem"));
    item.append(choice("checkbox", "blocks-" + calendar.id, "Blocks my time", calendar.name, calendar.blocks_time,
      (event) => patchCalendar(calendar, { blocks_time: event.target.checked },
        event.target.checked ? calendar.name + " now blocks your time." : calendar.name + " no longer blocks your time.")));
    item.append(choice("radio", "destination", "Receives sessions", calendar.name, calendar.is_destination,
      () => patchCalendar(calendar, { is_destination: true }, "Sessions will be written to " + calendar.name + ".")));
    const remove = element("button", "Disconnect", "secondary");
    remove.type = "button";
    remove.setAttribute("aria-label", "Disconnect " + calendar.name);
    remove.addEventListener("click", () => removeCalendar(calendar));
    item.append(remove);
    return item;
  }

  function showCalendars(calendars) {
    const list = $("calendars");
    list.replaceChildren();
    if (!calendars.length) { list.append(element("li", "No calendar connected yet.")); return; }
    for (const calendar of calendars) list.append(calendarCard(calendar));
  }

  async function loadCalendars() { showCalendars(await api(mentorPath + "/calendar-status")); }

  async function patchCalendar(calendar, change, done) {
    await attempt(async () => {
      showCalendars(await api(mentorPath + "/calendars/" + calendar.id,
        { method: "PATCH", body: JSON.stringify(change) }));
    }, done);
    await loadCalendars().catch(() => {});
  }

  async function removeCalendar(calendar) {
    if (!window.confirm("Disconnect " + calendar.name + "? Its events will stop blocking your time.")) return;
    await attempt(() => api(mentorPath + "/calendars/" + calendar.id, { method: "DELETE" }),
      calendar.name + " was disconnected.");
    await loadCalendars();
  }

  async function connectCalDAV(event) {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    button.disabled = true;
    say("Checking the connection with the server…");
    const body = {
      url: form.url.value.trim(),
      username: form.username.value.trim() || null,
      password: form.password.value || null,
    };
    const ok = await attempt(async () => {
      const result = await api(mentorPath + "/calendars/caldav", { method: "POST", body: JSON.stringify(body) });
      showCalendars(result.calendars);
    }, "Connected. Choose below which calendars block your time and which one receives sessions.");
    button.disabled = false;
    form.password.value = "";  // never keep the password around in the page
    if (ok) form.reset();
  }

  // -- hours -------------------------------------------------------------------------------

  function splitRanges(text) {
    return text.split(",").map((part) => part.trim()).filter((part) => part.length);
  }

  function showHours(hours) {
    for (const day of WEEKDAYS) $("hours-" + day).value = (hours.weekly[day] || []).join(", ");
    const list = $("overrides");
    list.replaceChildren();
    if (!hours.overrides.length) { list.append(element("li", "None: your weekly hours apply.")); return; }
    for (const override of hours.overrides) list.append(overrideCard(override));
  }

  function overrideCard(override) {
    const item = document.createElement("li");
    const day = new Date(override.date + "T12:00:00Z").toLocaleDateString(undefined,
      { weekday: "long", day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
    const hours = override.ranges.length ? override.ranges.join(", ") : "unavailable";
    item.append(element("span", day + ": " + hours + " "));
    const remove = element("button", "Remove", "secondary");
    remove.type = "button";
    remove.setAttribute("aria-label", "Remove the hours of " + day);
    remove.addEventListener("click", () => attempt(async () => {
      showHours(await api(mentorPath + "/overrides/" + override.date, { method: "DELETE" }));
    }, "Your weekly hours apply again on " + day + "."));
    item.append(remove);
    return item;
  }

  async function saveHours(event) {
    event.preventDefault();
    const specs = [];
    for (const day of WEEKDAYS) {
      for (const range of splitRanges($("hours-" + day).value)) specs.push(day + " " + range);
    }
    await attempt(async () => {
      showHours(await api(mentorPath + "/hours", { method: "PUT", body: JSON.stringify({ specs }) }));
    }, "Weekly hours saved.");
  }

  async function saveOverride(event) {
    event.preventDefault();
    const day = $("override-date").value;
    const ranges = splitRanges($("override-ranges").value);
    const ok = await attempt(async () => {
      showHours(await api(mentorPath + "/overrides/" + day, { method: "PUT", body: JSON.stringify({ ranges }) }));
    }, ranges.length ? "Hours for " + day + " saved." : day + " is marked unavailable.");
    if (ok) event.target.reset();
  }

  $("caldav").addEventListener("submit", connectCalDAV);
  $("hours").addEventListener("submit", saveHours);
  $("override").addEventListener("submit", saveOverride);
  loadCalendars().catch((error) => say("Could not load your calendars: " + error.message));
  api(mentorPath + "/hours").then(showHours).catch((error) => say("Could not load your hours: " + error.message));
})();
