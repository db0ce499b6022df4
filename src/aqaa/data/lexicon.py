"""Entities the SpokenQA generator talks about: countries, capitals, continents, colours, names, phrases."""

from __future__ import annotations

# (country, capital, continent) — 64 entries whose names Piper, espeak-ng and Whisper tiny.en handle well.
COUNTRIES: list[tuple[str, str, str]] = [
    ("Japan", "Tokyo", "Asia"), ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"), ("Spain", "Madrid", "Europe"), ("Portugal", "Lisbon", "Europe"),
    ("England", "London", "Europe"), ("Ireland", "Dublin", "Europe"), ("Russia", "Moscow", "Europe"),
    ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"), ("Egypt", "Cairo", "Africa"),
    ("Kenya", "Nairobi", "Africa"), ("Canada", "Ottawa", "North America"), ("Mexico", "Mexico City", "North America"),
    ("Peru", "Lima", "South America"), ("Chile", "Santiago", "South America"), ("Argentina", "Buenos Aires", "South America"),
    ("Colombia", "Bogota", "South America"), ("Venezuela", "Caracas", "South America"), ("Cuba", "Havana", "North America"),
    ("Poland", "Warsaw", "Europe"), ("Austria", "Vienna", "Europe"), ("Greece", "Athens", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Norway", "Oslo", "Europe"), ("Finland", "Helsinki", "Europe"),
    ("Denmark", "Copenhagen", "Europe"), ("Belgium", "Brussels", "Europe"), ("Hungary", "Budapest", "Europe"),
    ("the Czech Republic", "Prague", "Europe"), ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"),
    ("Serbia", "Belgrade", "Europe"), ("Ukraine", "Kyiv", "Europe"), ("Turkey", "Ankara", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"), ("Syria", "Damascus", "Asia"),
    ("Lebanon", "Beirut", "Asia"), ("Jordan", "Amman", "Asia"), ("Saudi Arabia", "Riyadh", "Asia"),
    ("Afghanistan", "Kabul", "Asia"), ("Pakistan", "Islamabad", "Asia"), ("Bangladesh", "Dhaka", "Asia"),
    ("Nepal", "Kathmandu", "Asia"), ("Thailand", "Bangkok", "Asia"), ("Vietnam", "Hanoi", "Asia"),
    ("the Philippines", "Manila", "Asia"), ("Indonesia", "Jakarta", "Asia"), ("Malaysia", "Kuala Lumpur", "Asia"),
    ("South Korea", "Seoul", "Asia"), ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington", "Oceania"),
    ("Nigeria", "Abuja", "Africa"), ("Ghana", "Accra", "Africa"), ("Ethiopia", "Addis Ababa", "Africa"),
    ("Morocco", "Rabat", "Africa"), ("Algeria", "Algiers", "Africa"), ("Tunisia", "Tunis", "Africa"),
    ("Sudan", "Khartoum", "Africa"), ("Uganda", "Kampala", "Africa"), ("Zimbabwe", "Harare", "Africa"),
    ("Scotland", "Edinburgh", "Europe"),
]

# (thing, colour)
COLOURS: list[tuple[str, str]] = [
    ("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("a banana", "yellow"),
    ("a lemon", "yellow"), ("a strawberry", "red"), ("a tomato", "red"), ("an orange", "orange"),
    ("a carrot", "orange"), ("milk", "white"), ("a lime", "green"), ("the sun", "yellow"), ("blood", "red"),
    ("chocolate", "brown"), ("a pumpkin", "orange"), ("a frog", "green"), ("a crow", "black"),
    ("a cloud", "white"), ("the ocean", "blue"), ("a ripe cherry", "red"), ("an eggplant", "purple"),
    ("a flamingo", "pink"), ("an elephant", "gray"), ("a polar bear", "white"), ("a leaf in summer", "green"),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

NAMES = ["Anna", "Maria", "David", "James", "Sarah", "Peter", "Emma", "Oliver", "Sophia", "Daniel", "Laura",
         "Michael", "Lucy", "Thomas", "Grace", "Henry", "Alice", "Jack", "Olivia", "Samuel", "Ella", "George",
         "Chloe", "Robert", "Hannah", "William", "Kate", "Benjamin", "Nora", "Victor", "Julia", "Martin", "Rosa",
         "Paul", "Linda", "Frank", "Helen", "Adam", "Nina", "Simon", "Amy", "Leo", "Clara", "Oscar", "Ruth"]

COLOUR_NAMES = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white", "brown", "gray"]
PETS = ["dog", "cat", "rabbit", "parrot", "hamster", "horse", "turtle", "goldfish"]
CITIES = sorted({c[1] for c in COUNTRIES if " " not in c[1]})

# Short phrases for speech-control requests.
PHRASES = [
    "good morning", "good night", "thank you very much", "see you later", "have a nice day", "hello there",
    "welcome home", "happy birthday", "nice to meet you", "good luck", "well done", "I am ready", "let us begin",
    "time to go", "good afternoon", "excuse me", "no problem", "take care", "the train is late",
    "the door is open", "the water is cold", "I like music", "it is raining", "the sun is shining",
    "good evening", "please sit down", "that sounds great", "I will be there", "the coffee is hot",
    "we are almost done", "keep going", "stay calm", "the book is on the table", "open the window",
    "close the door", "dinner is ready", "what a lovely day", "I love this song", "the shop is closed",
    "see you tomorrow",
]
