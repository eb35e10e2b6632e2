document.getElementById("app").textContent = "souk";
