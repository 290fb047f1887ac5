/*
 * Passerelle web chat — embeddable with one tag, no build step:
 *
 *   <script src="https://passerelle.example.org/widget.js"
 *           data-key="pwk_…"               (public widget key of the establishment)
 *           data-api="https://passerelle.example.org"   (optional: defaults to the script's origin)
 *           data-context="chu-exemple"      (optional: puts the establishment's contacts first)
 *           data-target="id-of-a-div"       (optional: where to draw; else right after the tag)
 *           async></script>
 *
 * Isolated from the host page: everything is drawn inside a Shadow DOM, so the host's CSS
 * cannot restyle or hide it, and ours cannot leak out. Under a Content-Security-Policy the host
 * must allow the service's origin in script-src, style-src and connect-src, and data: in
 * img-src (docs/integration.md); a blocked connection is told apart from a network failure.
 *
 * Accessible: everything works with the keyboard, replies are announced by an ARIA live
 * region, buttons are large. Text is always inserted as text (never as HTML); only http(s)
 * addresses and phone numbers become links, built element by element.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) { return; }
  var data = script.dataset;
  var scriptUrl = new URL(script.src, window.location.href);
  var apiBase = new URL(data.api || scriptUrl.origin, window.location.href);
  var apiOrigin = apiBase.origin;
  var api = apiBase.href.replace(/\/+$/, "") + "/api/v1";
  var key = data.key || "";
  var context = data.context || null;
  var storageKey = "passerelle:" + key.slice(0, 16) + ":" + (context || "");
  var uid = Math.random().toString(36).slice(2, 8);

  var TEXT = {
    title: "Passerelle — discussion d'orientation",
    log: "Conversation avec Passerelle",
    you: "Vous : ",
    bot: "Passerelle : ",
    label: "Votre message (ou choisissez une réponse ci-dessus)",
    send: "Envoyer",
    choices: "Réponses proposées",
    restart: "Nouvelle conversation",
    barometer: "Baromètre",
    barometerHint: "Évaluer notre partenariat (baromètre)",
    erase: "Effacer cette conversation",
    eraseQuestion: "Effacer définitivement cette conversation ? Vos réponses seront supprimées de Passerelle.",
    eraseYes: "Oui, effacer",
    eraseNo: "Annuler",
    erased: "Conversation effacée. Une nouvelle commence.",
    waiting: "Passerelle écrit…",
    stillWaiting: "Un instant : Passerelle répond encore à votre message précédent. Votre texte est gardé.",
    notSent: "Non envoyé",
    retry: "Réessayer",
    enlarge: "Agrandir le graphique",
    chart: "Graphique en grand",
    chartFrame: "Graphique (faites défiler pour tout voir)",
    close: "Fermer",
    chartPrefix: "Graphique : ",
    chartDetail: ". Le détail est dans le message précédent.",
    newWindow: " (nouvel onglet)",
    noKey: "La discussion n'est pas configurée (clé manquante).",
    network: "Le service ne répond pas pour l'instant. Vérifiez votre connexion et réessayez dans un moment.",
    blocked: "Cette page empêche la discussion de joindre son service (règle de sécurité « Content-Security-Policy » du site). Ce n'est pas votre connexion : le site doit autoriser " + apiOrigin + " (voir la documentation d'intégration de Passerelle).",
    tooMany: "Beaucoup de messages d'un coup : patientez quelques secondes puis réessayez.",
    stale: "Ce bouton n'est plus valable. Choisissez parmi les dernières réponses proposées.",
    tooLong: "Votre message est trop long : 2 000 caractères au plus.",
    generic: "Un problème est survenu. Réessayez, ou recommencez une conversation."
  };

  // -- a CSP block is reported by the browser as a violation event: remember it ---------------
  var blockedByPolicy = false;
  document.addEventListener("securitypolicyviolation", function (event) {
    var uri = event.blockedURI || "";
    if (event.effectiveDirective === "connect-src" && (uri === apiOrigin || uri.indexOf(apiOrigin + "/") === 0)) {
      blockedByPolicy = true;
    }
  });

  // -- DOM, inside a shadow root ------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  var host = el("div", { "class": "passerelle-host" });
  var target = data.target ? document.getElementById(data.target) : null;
  if (target) { target.appendChild(host); } else { script.parentNode.insertBefore(host, script.nextSibling); }
  var shadow = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  shadow.appendChild(el("link", { rel: "stylesheet", href: new URL("widget.css", scriptUrl).href }));

  var root = el("section", { "class": "passerelle", "aria-labelledby": "passerelle-title-" + uid });
  root.appendChild(el("h2", { "class": "passerelle-title", id: "passerelle-title-" + uid }, TEXT.title));
  var log = el("div", {
    "class": "passerelle-log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": TEXT.log, "aria-busy": "false", tabindex: "0"
  });
  root.appendChild(log);
  var status = el("p", { "class": "passerelle-sr", role: "status" });
  root.appendChild(status);
  var form = el("form", { "class": "passerelle-form", novalidate: "" });
  var inputId = "passerelle-input-" + uid;
  form.appendChild(el("label", { "for": inputId }, TEXT.label));
  var input = el("input", { id: inputId, type: "text", maxlength: "2000", autocomplete: "off" });
  form.appendChild(input);
  var sendButton = el("button", { type: "submit" }, TEXT.send);
  form.appendChild(sendButton);
  var note = el("p", { "class": "passerelle-note", role: "status", hidden: "" });
  form.appendChild(note);
  root.appendChild(form);
  var tools = el("div", { "class": "passerelle-tools" });
  var restartButton = el("button", { type: "button" }, TEXT.restart);
  var barometerButton = el("button", { type: "button", "class": "passerelle-barometer" }, TEXT.barometer);
  var eraseButton = el("button", { type: "button", "class": "passerelle-erase" }, TEXT.erase);
  tools.appendChild(restartButton);
  tools.appendChild(barometerButton);
  tools.appendChild(eraseButton);
  root.appendChild(tools);
  var confirmBox = el("div", { "class": "passerelle-confirm", role: "group", "aria-labelledby": "passerelle-confirm-" + uid, hidden: "" });
  confirmBox.appendChild(el("p", { id: "passerelle-confirm-" + uid }, TEXT.eraseQuestion));
  var eraseYes = el("button", { type: "button", "class": "passerelle-danger" }, TEXT.eraseYes);
  var eraseNo = el("button", { type: "button" }, TEXT.eraseNo);
  confirmBox.appendChild(eraseYes);
  confirmBox.appendChild(eraseNo);
  root.appendChild(confirmBox);
  var dialog = el("dialog", { "class": "passerelle-dialog", "aria-labelledby": "passerelle-dialog-" + uid });
  dialog.appendChild(el("h3", { id: "passerelle-dialog-" + uid }, TEXT.chart));
  // Scrollable when the chart is wider than the screen: reachable with the keyboard too.
  var dialogFrame = el("div", { "class": "passerelle-dialog-frame", tabindex: "0", role: "region", "aria-label": TEXT.chartFrame });
  var dialogImage = el("img", { alt: "" });
  dialogFrame.appendChild(dialogImage);
  dialog.appendChild(dialogFrame);
  var dialogClose = el("button", { type: "button" }, TEXT.close);
  dialog.appendChild(dialogClose);
  root.appendChild(dialog);
  shadow.appendChild(root);

  // -- state --------------------------------------------------------------------------------
  var conversationId = null;
  // The conversation's own secret, given at creation: the public key alone never reads it.
  var conversationSecret = null;
  var busy = false;
  var typing = null;
  var dialogOpener = null;

  function remember(id, secret) {
    conversationId = id;
    conversationSecret = id ? (secret || null) : null;
    try {
      if (id) {
        window.sessionStorage.setItem(storageKey, id);
        window.sessionStorage.setItem(storageKey + ":secret", conversationSecret || "");
      } else {
        window.sessionStorage.removeItem(storageKey);
        window.sessionStorage.removeItem(storageKey + ":secret");
      }
    } catch (e) { /* storage may be disabled: the conversation simply won't survive a reload */ }
  }

  function recalled() {
    try {
      conversationSecret = window.sessionStorage.getItem(storageKey + ":secret") || null;
      return window.sessionStorage.getItem(storageKey);
    } catch (e) { return null; }
  }

  // Resolves to {status, body}; rejects with "blocked" (the page's CSP) or "network".
  function call(method, path, body) {
    var options = { method: method, headers: { "Authorization": "Bearer " + key } };
    if (conversationSecret && path !== "/conversations") {
      options.headers["X-Conversation-Secret"] = conversationSecret;
    }
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(api + path, options).then(function (response) {
      if (response.status === 204) { return { status: 204, body: null }; }
      return response.json().then(
        function (json) { return { status: response.status, body: json }; },
        function () { return { status: response.status, body: null }; }
      );
    }, function () {
      // The violation event is queued as a task: give it time to arrive before deciding.
      return new Promise(function (resolve, reject) {
        window.setTimeout(function () { reject(blockedByPolicy ? "blocked" : "network"); }, 200);
      });
    });
  }

  // -- rendering ----------------------------------------------------------------------------
  var URL_PATTERN = /https?:\/\/[^\s<>"«»]+/g;
  var PHONE_PATTERN = /(?:\+\d{2,3}[ .]?(?:\(0\)[ .]?)?\d|\b0\d)(?:[ .]?\d{2}){3,4}\b/g;
  var CRISIS_LINE = /^(• )(\d{2,4}|\d{2,4}(?: \d{2,3}){1,3})( — )/;

  function addLink(parent, href, shown, external) {
    var link = el("a", { href: href });
    if (external) {
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer");
    }
    // Break long addresses after / . ? & = - only, never inside a word.
    // (No look-behind in the pattern: older Safari would reject the whole script.)
    shown.replace(/([\/.?&=\-_])/g, "$1\u0000").split("\u0000").forEach(function (piece) {
      if (!piece) { return; }
      if (link.firstChild) { link.appendChild(document.createElement("wbr")); }
      link.appendChild(document.createTextNode(piece));
    });
    if (external) { link.appendChild(el("span", { "class": "passerelle-sr" }, TEXT.newWindow)); }
    parent.appendChild(link);
  }

  function telHref(number) { return "tel:" + number.replace(/[^\d+]/g, ""); }

  function safeHttp(address) {
    try {
      var parsed = new URL(address);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) { return null; }
  }

  // Plain text with its URLs and phone numbers as links (built as nodes, never as HTML).
  function appendPhones(parent, text) {
    var last = 0;
    text.replace(PHONE_PATTERN, function (match, offset) {
      parent.appendChild(document.createTextNode(text.slice(last, offset)));
      addLink(parent, telHref(match), match, false);
      last = offset + match.length;
      return match;
    });
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function appendRich(parent, text) {
    text.split("\n").forEach(function (line, index) {
      if (index) { parent.appendChild(document.createTextNode("\n")); }
      var crisis = CRISIS_LINE.exec(line);
      if (crisis) {
        parent.appendChild(document.createTextNode(crisis[1]));
        addLink(parent, telHref(crisis[2]), crisis[2], false);
        parent.appendChild(document.createTextNode(crisis[3]));
        line = line.slice(crisis[0].length);
      }
      var last = 0;
      line.replace(URL_PATTERN, function (match, offset) {
        var address = match.replace(/[.,;:!?)\]]+$/, "");
        var href = safeHttp(address);
        appendPhones(parent, line.slice(last, offset));
        if (href) { addLink(parent, href, address, true); } else { parent.appendChild(document.createTextNode(address)); }
        last = offset + address.length;
        return match;
      });
      appendPhones(parent, line.slice(last));
    });
  }

  function activeChoices() {
    return log.querySelectorAll(".passerelle-choices button:not(:disabled)");
  }

  function disableChoices() {
    var buttons = activeChoices();
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    return buttons;
  }

  function enable(buttons) {
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = false; }
  }

  function addPerson(text) {
    var node = el("div", { "class": "passerelle-msg passerelle-person" });
    node.appendChild(el("span", { "class": "passerelle-sr" }, TEXT.you));
    node.appendChild(document.createTextNode(text));
    log.appendChild(node);
    return node;
  }

  function addError(text) {
    var node = el("div", { "class": "passerelle-msg passerelle-error", role: "alert" }, text);
    log.appendChild(node);
    scrollTo(node);
    return node;
  }

  function clearErrors() {
    var errors = log.querySelectorAll(".passerelle-error");
    for (var i = 0; i < errors.length; i++) { errors[i].remove(); }
  }

  function shortAlt(reply) {
    // The chart comes after the message holding its detail: name it, don't repeat the detail.
    var first = (reply.image_alt || "").split("\n")[0].trim().replace(/\s*[:.]$/, "");
    if (first.length > 160) { first = first.slice(0, 157).replace(/\s+\S*$/, "") + "…"; }
    return first ? TEXT.chartPrefix + first + TEXT.chartDetail : TEXT.chart;
  }

  function addImage(node, reply) {
    var figure = el("figure", { "class": "passerelle-figure" });
    var image = el("img", { src: reply.image_url, alt: shortAlt(reply) });
    figure.appendChild(image);
    var open = el("button", { type: "button", "class": "passerelle-enlarge" }, TEXT.enlarge);
    open.addEventListener("click", function () {
      dialogImage.src = image.src;
      dialogImage.alt = image.alt;
      dialogOpener = open;
      if (dialog.showModal) { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
      dialogClose.focus();
    });
    figure.appendChild(open);
    node.appendChild(figure);
  }

  function addReply(reply, active) {
    var node = el("div", { "class": "passerelle-msg passerelle-bot" });
    node.appendChild(el("span", { "class": "passerelle-sr" }, TEXT.bot));
    appendRich(node, reply.text || "");
    if (reply.image_url) { addImage(node, reply); }
    var first = null;
    if (reply.choices && reply.choices.length) {
      var group = el("div", { "class": "passerelle-choices", role: "group", "aria-label": TEXT.choices });
      reply.choices.forEach(function (choice) {
        var button = el("button", { type: "button", "data-choice": choice.id }, choice.label);
        button.disabled = !active;
        button.addEventListener("click", function () { choose(choice); });
        group.appendChild(button);
        if (!first) { first = button; }
      });
      node.appendChild(group);
    }
    log.appendChild(node);
    return { node: node, button: first };
  }

  // Show `node` at the top of the log (the start of a new answer), not the end of it.
  function scrollTo(node) {
    log.scrollTop = Math.max(0, node.offsetTop - 8);
  }

  function showTurn(turn, focusChoices) {
    disableChoices();
    var first = null;
    var start = null;
    (turn.replies || []).forEach(function (reply) {
      var added = addReply(reply, true);
      start = start || added.node;
      if (added.button) { first = first || added.button; }
    });
    if (focusChoices && first) { first.focus({ preventScroll: true }); } else if (focusChoices) { input.focus({ preventScroll: true }); }
    if (start) { scrollTo(start); }
  }

  function setBusy(value) {
    busy = value;
    log.setAttribute("aria-busy", value ? "true" : "false");
    status.textContent = value ? TEXT.waiting : "";
    barometerButton.disabled = value;
    restartButton.disabled = value;
    eraseButton.disabled = value;
    var retries = log.querySelectorAll(".passerelle-retry");
    for (var i = 0; i < retries.length; i++) { retries[i].disabled = value; }
    if (value && !typing) {
      typing = el("div", { "class": "passerelle-msg passerelle-bot passerelle-typing", "aria-hidden": "true" }, TEXT.waiting);
      log.appendChild(typing);
      log.scrollTop = log.scrollHeight;
    } else if (!value && typing) {
      typing.remove();
      typing = null;
      note.hidden = true;
    }
  }

  function explain(result) {
    if (result === "blocked") { return TEXT.blocked; }
    if (!result || result === "network") { return TEXT.network; }
    var code = result.body && result.body.error ? result.body.error.code : "";
    if (result.status === 429) { return TEXT.tooMany; }
    if (code === "unknown_choice") { return TEXT.stale; }
    if (code === "text_too_long" || code === "body_too_large") { return TEXT.tooLong; }
    if (result.status === 401) { return TEXT.noKey; }
    return TEXT.generic;
  }

  // -- actions ------------------------------------------------------------------------------
  function start(focus) {
    if (!key) { addError(TEXT.noKey); return Promise.resolve(); }
    setBusy(true);
    return call("POST", "/conversations", context ? { context: context } : {}).then(function (result) {
      setBusy(false);
      if (result.status !== 201) { addError(explain(result)); return; }
      clearErrors();
      remember(result.body.conversation_id, result.body.conversation_secret);
      showTurn(result.body, focus);
    }, function (why) { setBusy(false); addError(explain(why)); });
  }

  // A message that did not reach the service: marked « Non envoyé », with a retry button.
  function markFailed(bubble, body, focusChoices, retryable) {
    bubble.classList.add("passerelle-failed");
    var mark = el("span", { "class": "passerelle-failed-mark" });
    mark.appendChild(el("span", {}, TEXT.notSent));
    bubble.appendChild(mark);
    if (!retryable) { return; }
    var retry = el("button", { type: "button", "class": "passerelle-retry" }, TEXT.retry);
    retry.addEventListener("click", function () {
      if (busy) { return; }
      mark.remove();
      bubble.classList.remove("passerelle-failed");
      deliver(bubble, body, focusChoices);
    });
    mark.appendChild(retry);
  }

  function deliver(bubble, body, focusChoices) {
    var offered = disableChoices();
    setBusy(true);
    call("POST", "/conversations/" + encodeURIComponent(conversationId) + "/messages", body).then(function (result) {
      setBusy(false);
      if (result.status === 200) {
        clearErrors();
        var retries = log.querySelectorAll(".passerelle-retry");
        for (var i = 0; i < retries.length; i++) { retries[i].remove(); }
        showTurn(result.body, focusChoices);
        return;
      }
      if (result.status === 404) { remember(null); start(true); return; }
      enable(offered);
      markFailed(bubble, body, focusChoices, result.status >= 500 || result.status === 429);
      addError(explain(result));
    }, function (why) {
      setBusy(false);
      enable(offered);
      markFailed(bubble, body, focusChoices, true);
      addError(explain(why));
    });
  }

  function send(body, shown, focusChoices) {
    if (busy) { return false; }
    if (!conversationId) { start(true); return false; }
    var bubble = addPerson(shown);
    deliver(bubble, body, focusChoices);
    return true;
  }

  function choose(choice) { send({ choice: choice.id }, choice.label, true); }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    if (busy) {
      // Not dropped silently: say why nothing happened, and keep what was typed.
      note.textContent = TEXT.stillWaiting;
      note.hidden = false;
      return;
    }
    if (text.length > 2000) { addError(TEXT.tooLong); return; }
    if (send({ text: text }, text, false)) { input.value = ""; }
    input.focus();
  });

  barometerButton.addEventListener("click", function () {
    if (busy || !conversationId) { return; }
    send({ choice: "cmd:barometre" }, TEXT.barometerHint, true);
  });

  restartButton.addEventListener("click", function () {
    if (busy) { return; }
    remember(null);
    disableChoices();
    start(true);
  });

  function showConfirm(visible) {
    confirmBox.hidden = !visible;
    tools.hidden = visible;
  }

  eraseButton.addEventListener("click", function () {
    if (busy || !conversationId) { return; }
    showConfirm(true);
    eraseNo.focus();
  });

  eraseNo.addEventListener("click", function () {
    showConfirm(false);
    eraseButton.focus();
  });

  eraseYes.addEventListener("click", function () {
    if (busy || !conversationId) { return; }
    var id = conversationId;
    showConfirm(false);
    setBusy(true);
    call("DELETE", "/conversations/" + encodeURIComponent(id)).then(function (result) {
      setBusy(false);
      if (result.status !== 204 && result.status !== 404) { addError(explain(result)); return; }
      remember(null);
      while (log.firstChild) { log.removeChild(log.firstChild); }
      log.appendChild(el("div", { "class": "passerelle-msg passerelle-bot" }, TEXT.erased));
      start(true);
    }, function (why) { setBusy(false); addError(explain(why)); });
  });

  dialogClose.addEventListener("click", function () { dialog.close ? dialog.close() : dialog.removeAttribute("open"); });
  dialog.addEventListener("close", function () { if (dialogOpener) { dialogOpener.focus(); } });

  // -- resume after a reload, else start ----------------------------------------------------
  function resume(id) {
    return call("GET", "/conversations/" + encodeURIComponent(id)).then(function (result) {
      if (result.status !== 200) { remember(null); return start(false); }
      conversationId = id;
      var lines = result.body.transcript || [];
      var lastPerson = -1;
      lines.forEach(function (line, index) { if (line.author === "person") { lastPerson = index; } });
      lines.forEach(function (line, index) {
        if (line.author === "person") {
          addPerson(line.text !== null ? line.text : labelOf(lines, index, line.choice));
        } else {
          addReply({ text: line.text, choices: line.choices }, index > lastPerson);
        }
      });
      log.scrollTop = log.scrollHeight;
    }, function (why) { addError(explain(why)); });
  }

  function labelOf(lines, index, choiceId) {
    for (var i = index - 1; i >= 0; i--) {
      var choices = lines[i].choices || [];
      for (var j = 0; j < choices.length; j++) {
        if (choices[j].id === choiceId) { return choices[j].label; }
      }
    }
    return choiceId || "";
  }

  var previous = recalled();
  if (previous && key) { resume(previous); } else { start(false); }
})();
