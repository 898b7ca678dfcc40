"""Calibration and evaluation text, written for this project (no downloads).

* :data:`SENTENCES`: 144 varied English sentences (everyday life, science, technology, places,
  food, sport, weather, questions, instructions), for sentence-embedding fidelity.
  :func:`eval_sentences` takes the first 64 (or ``n``), :func:`calibration_sentences` the other
  80, so calibration and evaluation do not overlap.
* :data:`STORIES`: simple children's stories in the TinyStories style (about 2.3k tokens, 11 stories, with
  the tinystories-656k tokenizer) for causal-LM perplexity and token KL, and
  :data:`CALIBRATION_STORY`, three separate ones (about 600 tokens) for calibration and MED.
"""

from __future__ import annotations

__all__ = ["SENTENCES", "STORIES", "CALIBRATION_STORY", "eval_sentences", "calibration_sentences",
           "story_text", "N_EVAL_SENTENCES"]

N_EVAL_SENTENCES = 64

SENTENCES = (
    "The cat slept on the warm windowsill all afternoon.",
    "A kitten is sleeping in the sunny window.",
    "Heavy rain is expected across the northern region tomorrow.",
    "The weather forecast says it will pour in the north tomorrow.",
    "She bought fresh bread and a bag of apples at the market.",
    "He picked up vegetables and a loaf from the grocery store.",
    "The stock market fell sharply after the interest rate announcement.",
    "Share prices dropped when the central bank raised rates.",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
    "Plants use light energy to make glucose from carbon dioxide.",
    "The new smartphone has a faster processor and a better camera.",
    "This phone model ships with an improved chip and camera.",
    "Our team won the football match in the last minute.",
    "They scored a late goal and won the soccer game.",
    "Please remember to turn off the lights when you leave.",
    "Don't forget to switch the lamps off on your way out.",
    "How long does it take to drive from Paris to Berlin?",
    "What is the travel time by car between the French and German capitals?",
    "The museum opens at nine in the morning on weekdays.",
    "On Monday to Friday the gallery welcomes visitors from 9 am.",
    "Regular exercise lowers the risk of heart disease.",
    "Working out often is good for your cardiovascular health.",
    "The recipe calls for two eggs, flour, sugar and a pinch of salt.",
    "You need flour, sugar, salt and a couple of eggs for this cake.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "After months in space, the probe reached Martian orbit.",
    "The library will be closed for renovation until next spring.",
    "Renovation work keeps the public library shut until spring.",
    "My grandmother tells the best stories about her childhood on the farm.",
    "Grandma loves to talk about growing up in the countryside.",
    "The software update fixed a security vulnerability in the browser.",
    "A patch closed a security hole in the web browser.",
    "Traffic was terrible this morning because of an accident on the bridge.",
    "A crash on the bridge caused long delays for commuters today.",
    "The orchestra played a beautiful symphony by Beethoven.",
    "Musicians performed one of Beethoven's symphonies wonderfully.",
    "Electric cars are becoming cheaper and more popular every year.",
    "Battery-powered vehicles keep getting more affordable and common.",
    "The children built a sandcastle at the beach.",
    "Kids made a castle out of sand by the sea.",
    "Quantum computers use qubits that can be in superposition.",
    "A qubit can hold a combination of zero and one at the same time.",
    "The restaurant serves the best pizza in town.",
    "You will not find a better pizza anywhere in this city.",
    "The volcano erupted, sending ash high into the sky.",
    "Ash shot into the air when the mountain exploded.",
    "I need to renew my passport before the trip.",
    "My passport expires soon, so I must get a new one before travelling.",
    "The company announced record profits for the third quarter.",
    "Quarterly earnings reached an all-time high, the firm said.",
    "A gentle breeze moved through the tall grass of the meadow.",
    "The meadow grass swayed softly in the wind.",
    "The doctor prescribed antibiotics for the infection.",
    "An infection was treated with a course of antibiotics.",
    "Learning a new language takes patience and daily practice.",
    "To master a foreign tongue you must study a little every day.",
    "The train to London departs from platform four.",
    "Passengers for London should go to platform 4.",
    "The painting was sold at auction for millions of dollars.",
    "An art collector paid a fortune for the canvas.",
    "Bees are essential for pollinating many of our crops.",
    "Many fruits and vegetables depend on bees for pollination.",
    "The mountain trail was steep, rocky and covered in snow.",
    "Hikers climbed a snowy, rocky path up the peak.",
    "Neural networks learn patterns from large amounts of data.",
    "The database query returned no results for that customer.",
    "Please send me the report by Friday afternoon.",
    "The old bridge was replaced with a modern steel structure.",
    "Penguins live mostly in the Southern Hemisphere.",
    "He plays the violin in a small jazz band on weekends.",
    "The city council approved a plan to build more bike lanes.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The baby laughed when the dog licked her hand.",
    "Our flight was delayed by three hours because of fog.",
    "The judge postponed the trial until next month.",
    "Solar panels on the roof provide most of the house's electricity.",
    "The chef sliced the onions very thinly.",
    "Is there a pharmacy open near here at this hour?",
    "The river flooded the village after days of rain.",
    "A good night's sleep improves memory and concentration.",
    "The telescope revealed thousands of distant galaxies.",
    "They painted the kitchen walls a pale shade of yellow.",
    "The marathon runner crossed the finish line exhausted but happy.",
    "Compilers translate source code into machine instructions.",
    "The farmer harvested the wheat before the storm arrived.",
    "She wrote a letter to her friend who lives abroad.",
    "The price of coffee has risen sharply this year.",
    "Wolves hunt in packs and communicate by howling.",
    "The students presented their science project to the class.",
    "Turn left at the second traffic light and the bank is on your right.",
    "The printer on the third floor is out of paper again.",
    "Ancient Rome was built over many centuries.",
    "The concert was cancelled because the singer was ill.",
    "Green tea contains antioxidants and a little caffeine.",
    "Spiking neural networks communicate with short binary events.",
    "The hotel room had a lovely view of the harbour.",
    # calibration only (below index 64 of this tuple are the evaluation sentences)
    "My neighbour grows tomatoes and beans in her back garden.",
    "The bus was full, so we decided to walk to the station.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The meeting has been moved to Thursday at two o'clock.",
    "He fixed the leaking tap with a new rubber washer.",
    "Our teacher asked us to read two chapters before Monday.",
    "The airport security line moved slowly this morning.",
    "She learned to swim when she was five years old.",
    "The factory produces thousands of bottles every hour.",
    "A strong wind knocked down several trees in the park.",
    "Could you pass me the salt, please?",
    "The app lets you track your spending and set a monthly budget.",
    "The lighthouse has guided ships along this coast for a century.",
    "They adopted a puppy from the local animal shelter.",
    "Most of the lake freezes over in January.",
    "The programmer found the bug after hours of debugging.",
    "We watched the sunset from the top of the hill.",
    "The bakery on the corner sells warm croissants every morning.",
    "The election results will be announced tonight.",
    "Recycling paper and glass helps reduce waste.",
    "The soup needs a little more pepper.",
    "His grandfather repaired clocks for a living.",
    "The storm knocked out power to thousands of homes.",
    "The festival attracts visitors from all over the world.",
    "Always back up your files before installing an update.",
    "The horse galloped across the open field.",
    "I forgot my umbrella and got soaked on the way home.",
    "The new law requires all drivers to carry insurance.",
    "The chess champion won the tournament without losing a game.",
    "Astronauts aboard the station conduct experiments in microgravity.",
    "The shop offers a discount to students on weekdays.",
    "Fresh snow covered the rooftops of the quiet village.",
    "The nurse checked the patient's temperature every hour.",
    "Their band released a new album last Friday.",
    "A map of the city is available at the tourist office.",
    "The dolphins followed the boat for several miles.",
    "The committee will review the proposal next week.",
    "Cooking rice requires the right amount of water.",
    "Our internet connection keeps dropping in the evening.",
    "The toddler stacked the blocks into a tall tower.",
    "The bridge is closed to traffic during the marathon.",
    "Wind turbines turn the energy of moving air into electricity.",
    "The author signed copies of her book at the store.",
    "Please keep your voice down in the reading room.",
    "The farmers market is busiest on Saturday mornings.",
    "Glaciers have been shrinking for decades.",
    "The referee blew the whistle to end the match.",
    "The cinema is showing an old black-and-white film tonight.",
)

STORIES = (
    "Once upon a time, there was a little girl named Lily. She lived in a small house with a red "
    "door and a big garden. Every morning, Lily went outside to look at the flowers. She liked the "
    "yellow ones best because they looked like the sun. One day, Lily saw a tiny bird sitting under "
    "a bush. The bird could not fly. Its wing was hurt. Lily felt sad for the bird. She picked it up "
    "very gently and took it inside. \"Mom, look! This bird is hurt,\" she said. Mom smiled and "
    "helped her make a soft bed in a box. Lily gave the bird some water and a few seeds. Every day, "
    "she talked to the bird and sang it a song. After many days, the bird began to hop and flap its "
    "wings. One sunny morning, Lily took the box to the garden. The bird looked at her, chirped "
    "happily, and flew up into the tree. Lily waved and laughed. She was happy because her new "
    "friend was well again.",
    "Tom had a big blue ball. He loved to play with it in the park. One day, he kicked the ball very "
    "hard and it went over the fence. Tom was sad. He could not climb the fence because it was too "
    "tall. Then a friendly dog came running. The dog was brown and had a long tail. It jumped through "
    "a hole in the fence and came back with the ball in its mouth. Tom was so happy! \"Thank you, "
    "dog!\" he said. The dog wagged its tail. Tom threw the ball and the dog ran to get it. They "
    "played together all afternoon. When the sun went down, Tom's dad came to the park. \"Who is "
    "your new friend?\" asked Dad. \"This is my friend the dog,\" said Tom. \"He found my ball.\" "
    "Dad laughed and gave the dog a pat on the head. From that day on, Tom and the dog met in the "
    "park every day to play ball.",
    "There was a little boat named Bob. Bob lived by the sea with many other boats. The big boats "
    "went far out on the water, but Bob always stayed near the shore. He wanted to go far away too. "
    "\"I am too small,\" Bob said. \"The waves are too big for me.\" One day, a little fish swam up "
    "to Bob. \"Why are you sad?\" asked the fish. \"I want to see the sea, but I am afraid,\" said "
    "Bob. The fish said, \"I am small too, and I swim everywhere. Come with me, I will show you the "
    "way.\" So Bob followed the fish. They went past the rocks and the birds. The water was calm and "
    "blue. Bob saw a turtle, a crab and a big whale. He was not afraid anymore. When the sun began "
    "to set, the fish showed Bob the way home. Bob told all the other boats about his trip. He felt "
    "brave and proud. The next day, he went out again with his friend the fish.",
    "Mia and her brother Sam wanted to bake a cake for their mom. It was her birthday. They went to "
    "the kitchen and found flour, sugar, eggs and milk. Sam was very excited. He poured the flour "
    "too fast, and a big white cloud flew into the air. Mia laughed because Sam's face was all "
    "white. \"You look like a snowman!\" she said. Sam laughed too. They mixed everything in a big "
    "bowl. Mia stirred and Sam added some red berries. Then they asked their grandpa to help them "
    "put the cake in the oven. The kitchen began to smell sweet and warm. When the cake was ready, "
    "they put candles on top. Mom came home and saw the cake. Her eyes were big and happy. \"Did "
    "you make this for me?\" she asked. \"Yes! Happy birthday!\" said Mia and Sam. Mom hugged them "
    "both. The cake was a little bit flat, but it was the best cake she ever had.",
    "Ben was a little bear who did not like to sleep. Every night, his mom said, \"Time for bed, "
    "Ben.\" But Ben wanted to play. He wanted to run and jump and climb trees. One night, Ben "
    "sneaked out of the cave. The forest was dark and quiet. He heard an owl say \"hoo, hoo.\" He "
    "saw the moon shining above the trees. At first, Ben was excited. But soon he felt cold and "
    "tired. He could not find the way back to the cave. Ben began to cry. Then the owl flew down "
    "to him. \"Are you lost, little bear?\" asked the owl. \"Yes,\" said Ben. \"I want my mom.\" "
    "The owl was kind. She flew slowly in front of Ben and showed him the way home. His mom was "
    "waiting at the cave. She gave him a big hug. Ben said, \"I am sorry, Mom. I will go to bed "
    "now.\" He curled up in his warm bed and fell asleep right away.",
    "Anna had a red kite. It was her favorite toy. One windy day, she went to the hill with her "
    "dad to fly it. The wind was strong, and the kite went up, up, up into the sky. Anna held the "
    "string tight. \"Look, Dad! It is so high!\" she shouted. Suddenly, the string slipped from her "
    "hand. The kite flew away over the trees. Anna was very sad. She sat on the grass and cried. "
    "Dad sat next to her. \"Let us go and look for it,\" he said. They walked down the hill and "
    "into the woods. They looked behind bushes and under trees. At last, Anna saw something red in "
    "a tall tree. It was her kite! Dad climbed the tree carefully and brought it down. The kite had "
    "a small hole, but Anna did not mind. At home, they fixed the hole with tape. The next day, "
    "Anna held the string with both hands.",
    "In a big green field, there lived a little rabbit named Rosie. Rosie had soft white fur and "
    "long ears. She loved to eat carrots. One day, Rosie could not find any carrots in the field. "
    "She hopped to the farm to look for some. On the way, she met a duck. \"Do you know where the "
    "carrots are?\" asked Rosie. \"No, but the cow might know,\" said the duck. Rosie hopped to "
    "the cow. The cow said, \"The farmer keeps carrots in his garden, but you must ask first.\" "
    "Rosie was a polite rabbit. She went to the farmer and said, \"Please, may I have a carrot?\" "
    "The farmer was surprised to see a talking rabbit. He smiled and gave her three big orange "
    "carrots. Rosie said thank you and shared the carrots with the duck and the cow. They all sat "
    "together in the sun and ate their lunch. Rosie learned that it is good to ask nicely and to "
    "share with friends.",
    "Max was a small robot who lived in a toy shop. He had shiny silver arms and a bright blue "
    "light on his head. Every night, when the shop was closed, Max woke up and played with the "
    "other toys. One night, a doll named Daisy fell off a high shelf. She could not get back up. "
    "The other toys were worried. Max said, \"I can help!\" He rolled to the shelf and stretched "
    "his long arms. He lifted Daisy gently and put her back in her place. \"Thank you, Max,\" said "
    "Daisy. \"You are a good friend.\" All the toys cheered. Then they had a little party with "
    "music and dancing. The teddy bear played the drum, and the toy train went around and around. "
    "When the sun came up, all the toys went back to their places. The shop keeper opened the door "
    "and never knew about the party. But Max smiled, because he knew he had helped a friend.",
    "Lucy found a small seed in the garden. It was round and brown. She asked her mom, \"What will "
    "this seed become?\" Mom said, \"Plant it and see.\" So Lucy dug a little hole and put the seed "
    "inside. She covered it with soil and gave it some water. Every day, she watered the seed and "
    "waited. For many days, nothing happened. Lucy was sad, but she did not give up. Then one "
    "morning, she saw a tiny green leaf coming out of the ground. \"Mom! It is growing!\" she "
    "shouted. The plant grew taller and taller. Soon it was taller than Lucy. Then a big yellow "
    "flower opened at the top. It was a sunflower! Birds came to eat the seeds from the flower. "
    "Lucy saved some seeds to plant next year. She learned that good things take time, and that "
    "it is important to be patient.",
    "Jack and his grandma went to the beach on a hot summer day. Jack wore his green hat and "
    "carried a bucket and a spade. Grandma carried a big bag with towels, sandwiches and juice. "
    "The sand was warm under their feet. Jack ran to the water and let the small waves touch his "
    "toes. \"It is cold!\" he shouted, and Grandma laughed. Then Jack started to build a sand "
    "castle. He made four towers and a wall all around. Grandma found pretty shells, and Jack put "
    "them on top of the towers. A crab walked slowly past the castle. Jack watched it with big "
    "eyes. \"Hello, little crab,\" he said. The crab did not answer, but it waved one claw. When "
    "they were hungry, they sat on the towel and ate their sandwiches. Later, the sea came closer "
    "and a big wave washed the castle away. Jack was sad for a moment. Then he smiled and said, "
    "\"We can build a bigger one next time!\" Grandma hugged him, and they walked home as the sun "
    "went down.",
    "Sara had a little cat named Whiskers. Whiskers was grey and very curious. One morning, "
    "Whiskers was gone. Sara looked under the bed, behind the sofa and in the garden, but she could "
    "not find him. She asked her neighbour, Mr. Brown, \"Have you seen my cat?\" Mr. Brown shook his "
    "head. Sara made a sign with a picture of Whiskers and put it on the tree in front of her "
    "house. She waited and waited. In the afternoon, she heard a soft sound. \"Meow, meow.\" The "
    "sound came from the shed. Sara opened the door, and there was Whiskers! He was sitting in a "
    "box with three tiny kittens next to him. Sara's eyes opened wide. \"Whiskers, you are not a "
    "boy cat!\" she laughed. Her mom came to see and she laughed too. They gave the cat some milk "
    "and a warm blanket. Sara gave the kittens names: Snow, Pepper and Button. Now Sara had four "
    "cats, and she was the happiest girl on the street.",
)

CALIBRATION_STORY = (
    "Once there was a happy frog named Fred. Fred lived in a pond with his friends. Every day, he "
    "jumped from one leaf to another. One day, Fred saw a little girl sitting by the pond. She "
    "looked sad. \"Why are you sad?\" asked Fred. \"I lost my shoe in the water,\" said the girl. "
    "Fred dived into the pond and looked for the shoe. He found it under a big rock. He pushed it "
    "to the side of the pond. The girl was so happy. She said, \"Thank you, frog!\" and gave Fred a "
    "big smile. Fred felt warm inside. He liked to help. That night, he told all his friends about "
    "the girl and the shoe. They said Fred was a very kind frog. The next day, the girl came back "
    "with her mom. They brought a picture of Fred that she had drawn. Fred jumped up and down with "
    "joy. Then the girl and the frog played by the pond until it was time to go home.\n\n"
    "Emma had a yellow umbrella with little white dots. She loved rainy days because she could "
    "use it. One morning, the sky was grey and the rain began to fall. Emma put on her red boots "
    "and took her umbrella. She walked to school and jumped in every puddle. Splash! Splash! On "
    "the way, she saw a small boy standing under a tree. He had no umbrella and he was wet and "
    "cold. \"Come with me,\" said Emma. \"My umbrella is big enough for two.\" The boy smiled and "
    "they walked together. His name was Leo, and he was new at school. Emma showed him the "
    "classroom, the library and the playground. At lunch, they sat together and shared an apple. "
    "When the rain stopped, a rainbow came out over the school. \"Look!\" said Leo. \"It is so "
    "pretty.\" Emma laughed. She was glad it had rained, because now she had a new friend.\n\n"
    "Grandpa Joe had a big old truck. It was blue, and it made a loud noise when it started. Every "
    "Saturday, Grandpa took his grandson Danny to the farm in the truck. Danny sat by the window "
    "and counted the cows. One, two, three, four! At the farm, they fed the chickens and picked "
    "eggs from the nests. Danny held each egg very carefully. Then they helped the farmer carry "
    "hay to the horses. The horses were tall and brown, and they liked to eat apples from Danny's "
    "hand. In the afternoon, the truck would not start. Grandpa tried and tried. Danny was "
    "worried. \"Will we have to sleep at the farm?\" he asked. Grandpa laughed and opened the hood. "
    "He found a loose wire and fixed it. The truck made its loud noise again. Danny clapped his "
    "hands. They drove home singing songs, with a box of fresh eggs on Danny's lap."
)


def eval_sentences(n=N_EVAL_SENTENCES):
    """The first ``n`` sentences (64 by default, at most 64: the rest are for calibration)."""
    if not 2 <= n <= N_EVAL_SENTENCES:
        raise ValueError(f"number of evaluation sentences must be in 2..{N_EVAL_SENTENCES}, not {n!r}")
    return list(SENTENCES[:n])


def calibration_sentences(n=None):
    """Sentences not used for evaluation (the last 80), or the first ``n`` of them."""
    rest = list(SENTENCES[N_EVAL_SENTENCES:])
    return rest if n is None else rest[:n]


def story_text():
    """All evaluation stories, one paragraph each."""
    return "\n\n".join(STORIES)
