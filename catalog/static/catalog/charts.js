// Draws every <canvas data-chart="ID"> from the JSON in the <script id="ID"> beside it
// (written by {% chart %}); no inline script, so a strict CSP holds.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    canvas.chart = new Chart(canvas, JSON.parse(source.textContent));
    canvas.dataset.drawn = "true";
  });
});
