classdef TableVar < scistack.BaseVariable
end
