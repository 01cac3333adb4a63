"""Common first names in France (folded: lower case, no accents).

A caller who opens with "Sophie Bernard" gives a name even when the dialog did not ask for one;
without a cue word, a known first name is what tells "Sophie Bernard" from "Internet Mobile".
Only the first word of a two- or three-word utterance is looked up, so the list needs the
common names, not every name.
"""

from __future__ import annotations

_NAMES = """
    adam adele adrien agathe agnes alain alexandra alexandre alexis alice aline amandine
    amelie anais andre andree angelique anne annie antoine arnaud arthur aurelie aurelien
    axel bastien beatrice benjamin benoit bernadette bernard brigitte bruno camille caroline
    catherine cecile celine chantal charles charlotte chloe christian christiane christine
    christophe claire claude clement clementine colette corinne cyril damien daniel daniele
    david delphine denis denise didier dominique dylan eleonore elisabeth elise elodie emilie
    emma emmanuel emmanuelle enzo eric estelle etienne eugenie eva fabien fabrice fabienne
    florence florian francis franck francois francoise frederic frederique gabriel gael
    gaelle genevieve georges gerard gilles ginette gisele guillaume guy helene henri herve
    hugo hugues ines irene isabelle jacqueline jacques jade jean jeanne jeremy jerome jocelyne
    joel joelle johan jonathan jordan josette joseph josiane julie julien juliette justine
    karine kevin laetitia laura laurence laurent lea leo leon leonie lina lisa loic louis
    louise luc lucas lucie lucien lucile ludovic lydie madeleine manon marc marcel margaux
    marguerite marie marine marion martin martine mathieu mathilde matteo maurice maxime
    melanie michel michele micheline mickael mireille monique muriel mylene nadia nadine
    natacha nathalie nathan nicolas nicole noemie oceane odile olivier pascal pascale patrice
    patricia patrick paul paule pauline philippe pierre quentin rachel raphael raymond regine
    remi renaud rene richard robert roger romain rose sabine sacha sandrine sarah sebastien
    serge simon simone solene sophie stephane stephanie suzanne sylvain sylvie theo therese
    thierry thomas timothee tristan valentin valerie vanessa veronique victor vincent virginie
    xavier yann yannick yves yvette yvonne zoe
"""
FIRST_NAMES: frozenset[str] = frozenset(_NAMES.split())
