classdef BigLoose < scistack.BaseVariable
end
